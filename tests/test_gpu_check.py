"""scripts/gpu_check.py: parts that fail or overrun do not stop the check, the time budget holds, and the issue's
targets are judged from the benchmarks' figures (the GPU run itself: docs/benchmarks.md)."""

from __future__ import annotations

import importlib
import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def gpu_check(monkeypatch):
    monkeypatch.syspath_prepend(str(ROOT / "scripts"))
    return importlib.import_module("gpu_check")


def bench_report(rigl: dict, static: dict) -> dict:
    return {"methods": {"dense": {"images_per_second": 1.0, "vs_dense": 1.0}, "static": static, "rigl": rigl}}


def test_targets_are_judged_from_the_benchmark_figures(gpu_check):
    results = {
        "bench": {
            "wrn22_2": bench_report({"images_per_second": 41_000.0, "vs_dense": 1.01, "amortised_vs_dense": 1.04},
                                    {"vs_dense": 1.03}),
            "resnet50": bench_report({"images_per_second": 7_900.0, "vs_dense": 1.01, "amortised_vs_dense": 1.06},
                                     {"vs_dense": 1.0}),
        },
        "topology": {"model": "resnet50", "update_over_step": 0.4},
    }  # fmt: skip
    verdicts = gpu_check.verdicts(results)
    assert {name: row["pass"] for name, row in verdicts.items()} == {
        "wrn22_2_rigl_images_per_second": True,
        "resnet50_rigl_images_per_second": False,
        "wrn22_2_rigl_overhead_vs_dense": True,  # the amortised figure: 4% over dense
        "wrn22_2_static_overhead_vs_dense": False,
        "resnet50_rigl_overhead_vs_dense": False,
        "resnet50_static_overhead_vs_dense": True,
        "resnet50_topology_update_over_step": True,
    }
    assert verdicts["resnet50_rigl_images_per_second"] == {"target": ">= 8000", "measured": 7_900.0, "pass": False}


def test_targets_not_measured_are_none_not_failures(gpu_check):
    partial = {"bench": {"wrn22_2": {"methods": {"dense": {"images_per_second": 5.0, "vs_dense": 1.0}}},
                         "resnet50": None}, "topology": {"model": "wrn22_2", "update_over_step": 0.1}}  # fmt: skip
    assert all(row["pass"] is None and row["measured"] is None for row in gpu_check.verdicts(partial).values())
    assert all(row["pass"] is None for row in gpu_check.verdicts({}).values())


def test_a_part_gets_the_time_the_parts_before_it_left_but_never_the_later_parts_share(gpu_check):
    assert gpu_check.time_limit(100, 470, [80, 60]) == 330  # earlier parts finished early
    assert gpu_check.time_limit(100, 150, [80, 60]) == 100  # its share, even when earlier parts ran long...
    assert gpu_check.time_limit(100, 40, [80, 60]) == 40  # ...but never past the budget
    assert gpu_check.time_limit(100, float("inf"), [80]) == 100  # no budget: its share


def test_the_gpu_parts_fit_the_budget_and_the_cpu_parts_keep_their_options(gpu_check, tmp_path):
    gpu = gpu_check.plan(False, ROOT / ".whl", tmp_path / "site", tmp_path, tmp_path)
    cpu = gpu_check.plan(True, ROOT / ".whl", tmp_path / "site", tmp_path, tmp_path)
    assert [part.name for part in gpu] == [part.name for part in cpu] == [
        "install", "environment", "main", "distributed", "tests", "bench_wrn22_2", "bench_resnet50", "topology",
        "concurrent", "semi_structured"]
    assert sum(part.share_s for part in gpu) <= gpu_check.BUDGET_S <= 8 * 60
    by_name = {part.name: part for part in gpu}
    assert "model=resnet50" in by_name["bench_resnet50"].command and "--concurrent" in by_name["concurrent"].command
    assert not any("device=cpu" in part.command for part in gpu)
    sizes = ("dataset.train_pool=", "train.batch_size=", "device=", "--device", "--batch", "--steps", "--updates",
             "--features")

    def without_sizes(command: list[str]) -> list[str]:
        return [word for word in command if not (word.startswith(sizes) or word.isdigit() or word == "cpu")]

    for part in cpu:  # the same commands and options, with device=cpu and smaller sizes
        assert without_sizes(part.command) == without_sizes(by_name[part.name].command), part.name
    assert {part.name: part.env.get("RIGL_CUDA_TESTS_DEVICE") for part in cpu}["tests"] == "cpu"


def test_the_check_goes_on_past_a_failing_and_an_overrunning_part_and_reports_them(gpu_check, tmp_path, monkeypatch):
    python = sys.executable
    sleeper = "import signal, time; signal.signal(signal.SIGINT, signal.SIG_IGN); print('started', flush=True); " \
              "time.sleep(60)"  # fmt: skip
    figures = {"model": "resnet50", "update_over_step": 0.5}
    parts = [
        gpu_check.Part("fails", [python, "-c", "import sys; print('about to fail'); sys.exit(3)"], 30),
        gpu_check.Part("topology", [python, "-c", f"import json; print(json.dumps({figures!r}))"], 30,
                       collect=lambda part, results: results.update(topology=json.loads(part.output))),
        gpu_check.Part("overruns", [python, "-c", sleeper], 4),  # ignores the interrupt: killed a second later
        gpu_check.Part("late", [python, "-c", "print('never')"], 30),
    ]  # fmt: skip
    monkeypatch.setattr(gpu_check, "plan", lambda *args: parts)
    monkeypatch.setattr(gpu_check, "GRACE_S", 1.0)
    monkeypatch.setattr(gpu_check, "MIN_PART_S", 1.0)
    code = gpu_check.main([str(tmp_path / "out"), "--budget", "6", "--wheels", str(tmp_path)])
    results = json.loads((tmp_path / "out" / "results.json").read_text())
    statuses = {name: (part["status"], part["returncode"]) for name, part in results["parts"].items()}
    assert code == 1 and statuses["fails"] == ("failed", 3) and statuses["overruns"][0] == "timed out"
    assert statuses["topology"] == ("passed", 0) and statuses["late"] == ("skipped", None)  # the budget ran out
    assert results["targets"]["resnet50_topology_update_over_step"]["pass"] is True
    log = (tmp_path / "out" / "log.txt").read_text()
    assert "about to fail" in log and "started" in log and "part overruns still running 1 s later: killed" in log
    assert results["parts"]["overruns"]["seconds"] < 30  # stopped, not left to sleep its 60 s


def test_junit_counts_and_failure_messages(gpu_check, tmp_path):
    (tmp_path / "junit.xml").write_text(
        '<testsuites><testsuite name="pytest">'
        '<testcase classname="tests.training.test_cuda" name="test_a"/>'
        '<testcase classname="tests.training.test_cuda" name="test_b"><failure message="assert 0.84 &gt;= 0.85"/>'
        '</testcase><testcase classname="tests.training.test_cuda" name="test_c"><skipped message="no data"/>'
        '</testcase><testcase time="0.001" /></testsuite></testsuites>'  # what an interrupt leaves
    )
    summary = gpu_check.junit_summary(tmp_path / "junit.xml")
    assert (summary["total"], summary["passed"], summary["failed"], summary["error"], summary["skipped"]) == (
        3, 1, 1, 0, 1)  # fmt: skip
    assert summary["cases"]["tests.training.test_cuda.test_b"] == "failed: assert 0.84 >= 0.85"
    assert summary["unfinished"] == 1 and len(summary["cases"]) == 3
    assert gpu_check.junit_summary(tmp_path / "missing.xml") is None


def git_tree(root: Path, files: dict[str, int], ignore: str = "") -> Path:
    """A git repository at ``root`` with ``files`` (path -> bytes), the first committed, and a .gitignore."""
    import subprocess

    root.mkdir()
    subprocess.run(["git", "init", "-q", str(root)], check=True)
    (root / ".gitignore").write_text(ignore)
    for name, size in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(b"\0" * size)
    first = next(iter(files))
    subprocess.run(["git", "-C", str(root), "add", first, ".gitignore"], check=True)
    return root


def test_what_would_travel_is_measured_against_the_limit(gpu_check, tmp_path, capsys):
    tree = git_tree(tmp_path / "tree", {"code.py": 2**19, "notes.txt": 2**19})  # tracked + untracked
    wheels = tmp_path / "wheels"
    wheels.mkdir()
    (wheels / "a-1.0-py3-none-any.whl").write_bytes(b"\0" * 2**20)
    assert gpu_check.carry_size(tree, [wheels], limit_mib=60) == 0
    out = capsys.readouterr().out
    assert "1.00 MiB  a-1.0-py3-none-any.whl" in out and "1.00 MiB  working tree" in out
    assert gpu_check.carry_size(tree, [wheels], limit_mib=1.5) == 1  # the working tree comes on top


def test_what_git_ignores_does_not_travel(gpu_check, tmp_path, capsys):
    """A virtual environment in the checkout (100 MB here) is ignored, as the project's .gitignore ignores it."""
    ignore = (ROOT / ".gitignore").read_text()
    tree = git_tree(tmp_path / "tree", {"code.py": 10, ".venv/lib/torch.so": 100 * 2**20, "venv/x": 10,
                                        ".conda/y": 10, "outputs/run/checkpoint.pt": 2**20}, ignore)  # fmt: skip
    assert [path.name for path in gpu_check.travelling_files(tree)] == [".gitignore", "code.py"]
    assert gpu_check.carry_size(tree, [], limit_mib=1) == 0


def test_an_unknown_part_is_refused_before_anything_runs(gpu_check, tmp_path, capsys):
    with pytest.raises(SystemExit) as stopped:
        gpu_check.main([str(tmp_path / "out"), "--only", "tests,benchmarks"])
    assert stopped.value.code == 2 and "--only benchmarks: not a part" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_the_2_4_benchmark_checks_the_export_layout_and_says_why_it_did_not_time_on_the_cpu(tmp_path):
    record_file = tmp_path / "semi.json"
    result = subprocess.run([sys.executable, str(ROOT / "scripts" / "bench_semi_structured.py"), "--json",
                             str(record_file), "--device", "cpu", "--features", "64", "--batch", "8"],
                            capture_output=True, text=True, timeout=300)  # fmt: skip
    assert result.returncode == 0, result.stderr
    record = json.loads(record_file.read_text())
    assert record["layout_reloads_exactly"] and record["compressed_shape"] == [64, 32]
    assert "need a CUDA device" in record["skipped"] and "speedup" not in record


@pytest.mark.parametrize("arguments, message", [
    (["--features", "100"], "--features=100: semi-structured kernels take positive multiples of 64"),
    (["--batch", "0"], "--batch=0: expected a positive integer"),
])  # fmt: skip
def test_the_2_4_benchmark_refuses_bad_sizes_in_one_line(tmp_path, arguments, message):
    result = subprocess.run([sys.executable, str(ROOT / "scripts" / "bench_semi_structured.py"), "--json",
                             str(tmp_path / "semi.json"), "--device", "cpu", *arguments],
                            capture_output=True, text=True, timeout=300)  # fmt: skip
    assert result.returncode == 2 and result.stderr.strip().splitlines()[-1].endswith(message)
    assert not (tmp_path / "semi.json").exists()
