"""The GPU check (issue 14): one command for a bare GPU machine, finished in 8 minutes whatever fails.

    python3 scripts/gpu_check.py [RESULTS]        # on the GPU machine; RESULTS: $OUT if set, else outputs/gpu_check
    python3 scripts/gpu_check.py --cpu [RESULTS]  # the same parts on the CPU at tiny sizes (scripts/gpu_rehearse.sh)
    python3 scripts/gpu_check.py --carry-size     # what would travel to the machine, checked against 60 MiB

It runs these parts one after another, each in its own process with its own time limit (interrupted, then
killed, at the limit), logging what each printed and going on to the next whatever happened:

1. ``install``: the carried wheels (``make gpu-wheels``: ``.whl/*.whl``) into a fresh target folder with
   ``pip install --no-index --no-deps --target``, put first on PYTHONPATH, against the machine's own torch;
2. ``environment``: Python, torch, the GPU, the versions of the packages the project imports;
3. ``main``: a one-epoch run through ``main.py`` with ``logger.mode=disabled``, which must not import wandb;
4. ``tests``: ``pytest -m cuda`` (tests/training/test_cuda.py), with JUnit XML;
5. ``bench_wrn22_2``, ``bench_resnet50``: ``scripts/bench.py`` (dense, static, RigL at density 0.1, batch 128);
6. ``topology``: ``scripts/bench_topology.py`` (a ResNet-50 RigL update against one training step);
7. ``concurrent``: ``scripts/bench.py --methods rigl --concurrent 3`` (three RigL runs at once on the device);
8. ``semi_structured``: ``scripts/bench_semi_structured.py`` (a 2:4 Linear through ``to_sparse_semi_structured``
   against dense, fp16, 4096 x 4096, batch 4096; issue 27).

It writes three files into RESULTS: ``log.txt`` (everything printed, part by part), ``junit.xml`` (the tests)
and ``results.json`` (each part's outcome, every figure, and the issue's targets with a pass/fail verdict:
WRN-22-2 RigL >= 40,000 images/s, ResNet-50 RigL >= 8,000, RigL <= 5% and static <= 2% over dense, a
ResNet-50 topology update shorter than one step). results.json is rewritten after every part. The exit code
is 0 when every part ran clean (the targets are verdicts in results.json, not the exit code), else 1.

Only the standard library is used here: nothing else is installed when it starts.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import math
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import xml.etree.ElementTree as ElementTree
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, TextIO

ROOT = Path(__file__).resolve().parents[1]
CARRY_LIMIT_MIB = 60.0  # the device tool takes 64 MiB of working tree and carried paths; this leaves a margin
BUDGET_S = 470.0  # every part together, in seconds: the 8 minutes, less start-up and the last write
GRACE_S = 15.0  # between the interrupt at a part's limit and the kill
MIN_PART_S = 10.0  # a part is skipped when less of the budget is left
# Each part's share of the budget on the GPU, in seconds (guesses for an H200: most of each benchmark is compiling
# its model, once cold and twice from Inductor's cache), and its limit on the CPU (no budget: only against hangs).
GPU_SHARES_S = {"install": 15, "environment": 20, "main": 30, "distributed": 30, "tests": 105, "bench_wrn22_2": 80,
                "bench_resnet50": 95, "topology": 25, "concurrent": 55, "semi_structured": 15}  # fmt: skip
CPU_LIMITS_S = {"install": 120, "environment": 120, "main": 300, "distributed": 300, "tests": 900,
                "bench_wrn22_2": 600, "bench_resnet50": 900, "topology": 600, "concurrent": 600,
                "semi_structured": 120}  # fmt: skip
TARGETS = {  # issue 14, item 3 (one H200)
    "wrn22_2_rigl_images_per_second": (">=", 40_000.0),
    "resnet50_rigl_images_per_second": (">=", 8_000.0),
    "wrn22_2_rigl_overhead_vs_dense": ("<=", 1.05),
    "wrn22_2_static_overhead_vs_dense": ("<=", 1.02),
    "resnet50_rigl_overhead_vs_dense": ("<=", 1.05),
    "resnet50_static_overhead_vs_dense": ("<=", 1.02),
    "resnet50_topology_update_over_step": ("<", 1.0),
}
# Packages whose versions the environment part records: carried (.whl) and the machine's own.
PACKAGES = ("torch", "torchvision", "hydra-core", "omegaconf", "antlr4-python3-runtime", "optuna", "sqlalchemy",
            "alembic", "mako", "colorlog", "numpy", "pyyaml", "tqdm", "packaging", "pytest", "scikit-learn",
            "pandas", "matplotlib", "pillow", "wandb")  # fmt: skip


@dataclass
class Part:
    """One step of the check: a command, its time limit, and what to read from its files afterwards."""

    name: str
    command: list[str]
    share_s: float  # its time limit; with a budget, also the time kept for it while the parts before it run
    env: dict[str, str] = field(default_factory=dict)
    collect: Callable[[Part, dict[str, Any]], None] | None = None  # reads its outputs into the results
    unlogged: str | None = None  # lines starting so stay out of the log (kept in ``output``)
    output: str = ""  # everything it printed


@dataclass
class Outcome:
    status: str  # passed | failed | timed out | skipped
    returncode: int | None
    seconds: float


class Log:
    """Lines to the log file and to standard output at once (the device tool shows the end of the latter)."""

    def __init__(self, path: Path) -> None:
        self.handle: TextIO = open(path, "a", encoding="utf-8", errors="replace")

    def write(self, text: str) -> None:
        self.handle.write(text)
        self.handle.flush()
        sys.stdout.write(text)
        sys.stdout.flush()

    def line(self, text: str) -> None:
        self.write(f"[gpu_check {time.strftime('%H:%M:%S')}] {text}\n")


def run_part(part: Part, timeout_s: float, log: Log, cwd: Path) -> Outcome:
    """Run ``part.command`` in its own process group; at ``timeout_s`` interrupt it (pytest and the benchmarks
    then write what they have), and kill the group ``GRACE_S`` later. Never raises for the command's sake."""
    log.line(f"part {part.name} (limit {timeout_s:.0f} s): {' '.join(part.command)}")
    start = time.monotonic()
    env = {**os.environ, "PYTHONUNBUFFERED": "1", **part.env}
    try:
        process = subprocess.Popen(part.command, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                   text=True, errors="replace", start_new_session=True)  # fmt: skip
    except OSError as error:
        log.line(f"part {part.name} could not start: {error}")
        return Outcome("failed", None, time.monotonic() - start)
    chunks: list[str] = []

    def copy() -> None:
        for text in process.stdout:
            chunks.append(text)
            if part.unlogged is None or not text.startswith(part.unlogged):
                log.write(text)

    reader = threading.Thread(target=copy, daemon=True)
    reader.start()
    timed_out = False
    try:
        process.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        timed_out = True
        log.line(f"part {part.name} reached its {timeout_s:.0f} s limit: interrupted")
        signal_group(process, signal.SIGINT)
        try:
            process.wait(timeout=GRACE_S)
        except subprocess.TimeoutExpired:
            log.line(f"part {part.name} still running {GRACE_S:.0f} s later: killed")
            signal_group(process, signal.SIGKILL)
            process.wait()
    signal_group(process, signal.SIGKILL)  # anything it left running in its group (spawned workers)
    reader.join(timeout=5)
    part.output = "".join(chunks)
    seconds = time.monotonic() - start
    status = "timed out" if timed_out else ("passed" if process.returncode == 0 else "failed")
    log.line(f"part {part.name}: {status} (exit code {process.returncode}) in {seconds:.1f} s")
    return Outcome(status, process.returncode, seconds)


def time_limit(share_s: float, left_s: float, later_shares_s: list[float]) -> float:
    """A part's limit: its share, plus whatever the parts before it left unused, never eating into the shares
    of the parts after it; at most what is left of the budget. Without a budget (infinite), its share."""
    if math.isinf(left_s):
        return share_s
    return min(left_s, max(share_s, left_s - sum(later_shares_s)))


def signal_group(process: subprocess.Popen, number: int) -> None:
    try:
        os.killpg(process.pid, number)
    except (ProcessLookupError, PermissionError):
        pass


def environment(path: Path) -> dict[str, Any]:
    """Facts about this machine for the results (run as a part: it imports torch, which this process does not)."""
    import importlib.metadata
    import platform

    import torch

    facts: dict[str, Any] = {
        "python": sys.version.split()[0], "platform": platform.platform(), "cpu_count": os.cpu_count(),
        "torch": torch.__version__, "torch_cuda": torch.version.cuda, "cuda_available": torch.cuda.is_available(),
        "cpu_threads": torch.get_num_threads(), "packages": {},
    }  # fmt: skip
    if torch.cuda.is_available():
        properties = torch.cuda.get_device_properties(0)
        facts.update(gpu=properties.name, gpu_memory_gib=round(properties.total_memory / 2**30, 1),
                     gpu_capability=".".join(map(str, torch.cuda.get_device_capability(0))),
                     gpu_multiprocessors=properties.multi_processor_count, cudnn=torch.backends.cudnn.version())
    if shutil.which("nvidia-smi"):
        query = ["nvidia-smi", "--query-gpu=name,driver_version,memory.total,clocks.max.sm", "--format=csv,noheader"]
        facts["nvidia_smi"] = subprocess.run(query, capture_output=True, text=True, timeout=20).stdout.strip()
    for name in PACKAGES:
        try:
            facts["packages"][name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            facts["packages"][name] = None
    path.write_text(json.dumps(facts, indent=2) + "\n")
    print(json.dumps(facts, indent=2))
    return facts


def read_json(path: Path) -> Any:
    """A part's JSON file, or None when the part did not write it (failed or stopped early)."""
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def junit_summary(path: Path) -> dict[str, Any] | None:
    """Counts and each test's outcome from pytest's JUnit XML (``unfinished``: the test an interrupt stopped),
    or None when there is none."""
    try:
        tree = ElementTree.parse(path)
    except (OSError, ElementTree.ParseError):
        return None
    cases, unfinished = {}, 0
    for case in tree.iter("testcase"):
        if case.get("name") is None:  # the test running when pytest was interrupted
            unfinished += 1
            continue
        outcome = "passed"
        for child in case:
            if child.tag in ("failure", "error", "skipped"):
                outcome = {"failure": "failed", "error": "error", "skipped": "skipped"}[child.tag]
                if outcome != "skipped":
                    outcome += f": {child.get('message', '')[:300]}"
        cases[f"{case.get('classname')}.{case.get('name')}"] = outcome
    counts = {key: sum(value.startswith(key) for value in cases.values()) for key in ("passed", "failed", "error")}
    counts["skipped"] = sum(value == "skipped" for value in cases.values())
    return {"total": len(cases), **counts, "unfinished": unfinished, "cases": cases}


def target_figures(results: dict[str, Any]) -> dict[str, float | None]:
    """The figures the targets are about, from the benchmarks' JSON (None where not measured). Overheads are
    per-step ratios to dense; RigL's includes its topology update amortised over delta_t."""
    figures: dict[str, float | None] = {}
    for model in ("wrn22_2", "resnet50"):
        methods = ((results.get("bench") or {}).get(model) or {}).get("methods") or {}
        rigl, static = methods.get("rigl") or {}, methods.get("static") or {}
        figures[f"{model}_rigl_images_per_second"] = rigl.get("images_per_second")
        figures[f"{model}_rigl_overhead_vs_dense"] = rigl.get("amortised_vs_dense", rigl.get("vs_dense"))
        figures[f"{model}_static_overhead_vs_dense"] = static.get("vs_dense")
    topology = results.get("topology") or {}
    figures["resnet50_topology_update_over_step"] = (
        topology.get("update_over_step") if topology.get("model") == "resnet50" else None
    )
    return figures


def verdicts(results: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Each target of issue 14 against the measured figure: pass True/False, or None when it was not measured."""
    figures = target_figures(results)
    compare = {">=": lambda a, b: a >= b, "<=": lambda a, b: a <= b, "<": lambda a, b: a < b}
    table = {}
    for name, (relation, bound) in TARGETS.items():
        measured = figures.get(name)
        passed = None if measured is None else bool(compare[relation](measured, bound))
        table[name] = {"target": f"{relation} {bound:g}", "measured": measured, "pass": passed}
    return table


def write_results(path: Path, results: dict[str, Any]) -> None:
    results["targets"] = verdicts(results)
    temporary = path.with_name(f".{path.name}.tmp")
    temporary.write_text(json.dumps(results, indent=2, default=str) + "\n")
    temporary.replace(path)


def collect_into(*keys: str, file: Path) -> Callable[[Part, dict[str, Any]], None]:
    """A collector that stores ``file``'s JSON at ``results[keys[0]][keys[1]]...``."""

    def collect(part: Part, results: dict[str, Any]) -> None:
        target = results
        for key in keys[:-1]:
            target = target.setdefault(key, {})
        target[keys[-1]] = read_json(file)

    return collect


def plan(cpu: bool, wheels: Path, site: Path, scratch: Path, results_dir: Path) -> list[Part]:
    """The parts, with their shares of the GPU budget. CPU mode keeps the same commands and options, at sizes a
    2-core machine runs in minutes, with no overall budget."""
    python = sys.executable
    device = ["device=cpu"] if cpu else []
    junit = results_dir / "junit.xml"
    fashion_mnist = wheels / "fashion-mnist"
    test_env = {"RIGL_FASHION_MNIST_DIR": str(fashion_mnist.resolve())} if fashion_mnist.is_dir() else {}
    if cpu:
        test_env["RIGL_CUDA_TESTS_DEVICE"] = "cpu"
    # On a CPU shared with other work, one thread per process: several threads per process on cores that other
    # processes also use make each step many times slower (issue 14, item 4). The limits are only against hangs.
    threads = {"OMP_NUM_THREADS": "1"} if cpu else {}
    wrn = ["dataset.train_pool=32", "train.batch_size=16"] if cpu else ["dataset.train_pool=12800"]
    resnet = ["dataset.train_pool=16", "train.batch_size=8"] if cpu else ["dataset.train_pool=6400"]
    epochs = ["--epochs", "1" if cpu else "2"]
    topology = ["--device", "cpu", "--batch-size", "8", "--steps", "1", "--updates", "1"] if cpu else []
    runs = "2" if cpu else "3"
    semi_structured = ["--device", "cpu", "--features", "64", "--batch", "32"] if cpu else [
        "--features", "4096", "--batch", "4096"]  # fmt: skip

    def bench(name: str, arguments: list[str]) -> list[str]:
        return [python, "scripts/bench.py", *arguments, "--json", str(scratch / f"{name}.json")]

    def noted(part: Part, results: dict[str, Any]) -> None:
        results["environment"] = read_json(scratch / "environment.json")

    def wandb_check(part: Part, results: dict[str, Any]) -> None:
        lines = [line for line in part.output.splitlines() if line.startswith("import time:")]
        names = {line.split("|")[-1].strip() for line in lines}
        results["main_run"] = {"modules_imported": len(names), "wandb_imported": any(
            name.split(".")[0] == "wandb" for name in names)}  # fmt: skip

    def tests(part: Part, results: dict[str, Any]) -> None:
        results["tests"] = junit_summary(junit)

    def distributed(part: Part, results: dict[str, Any]) -> None:
        summaries = [read_json(path) for path in sorted((scratch / "ddp").rglob("summary.json"))]
        results["distributed"] = [{key: summary.get(key) for key in ("processes", "val_acc", "test_acc", "density")}
                                  for summary in summaries]  # fmt: skip

    wheel_files = sorted(str(path) for path in wheels.glob("*.whl"))
    # One test that hangs fails alone (pytest-timeout, there on the GPU machine) instead of taking the part's time.
    per_test_limit = [f"--timeout={600 if cpu else 120}"] if importlib.util.find_spec("pytest_timeout") else []
    share = CPU_LIMITS_S if cpu else GPU_SHARES_S
    parts = [
        Part("install", [python, "-m", "pip", "install", "-q", "--no-index", "--no-deps", "--no-compile",
                         "--no-cache-dir", "--upgrade", "--target", str(site), *wheel_files], share["install"]),
        Part("environment", [python, str(Path(__file__).resolve()), "--environment", str(scratch / "environment.json")],
             share["environment"], collect=noted),
        Part("main", [python, "-X", "importtime", "main.py", "dataset=digits", "train.epochs=1", "train.compile=off",
                      "logger.mode=disabled", f"output_root={scratch / 'runs'}", *device], share["main"],
             collect=wandb_check, unlogged="import time:"),
        # One run on two processes (issue 15). NCCL gives each process a GPU of its own; on a one-GPU machine the
        # two share it through gloo, which still runs the GPU path: SyncBatchNorm, DDP, the CUDA mask checksum.
        Part("distributed", [python, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", "main.py",
                             "dataset=digits", "train.epochs=2", "masking.delta_t=10", "distributed.backend=gloo",
                             "logger.mode=disabled", f"output_root={scratch / 'ddp'}", *device], share["distributed"],
             collect=distributed),
        Part("tests", [python, "-m", "pytest", "-m", "cuda", "-v", "-rs", "-p", "no:cacheprovider", "--durations=10",
                       *per_test_limit, f"--junitxml={junit}", "tests"], share["tests"], env=test_env, collect=tests),
        Part("bench_wrn22_2", bench("bench_wrn22_2", [*device, *wrn, *epochs]), share["bench_wrn22_2"],
             collect=collect_into("bench", "wrn22_2", file=scratch / "bench_wrn22_2.json")),
        Part("bench_resnet50", bench("bench_resnet50", [*device, "model=resnet50", "dataset.num_classes=100", *resnet,
                                                        *epochs]), share["bench_resnet50"],
             collect=collect_into("bench", "resnet50", file=scratch / "bench_resnet50.json")),
        Part("topology", [python, "scripts/bench_topology.py", *topology, "--json", str(scratch / "topology.json")],
             share["topology"], collect=collect_into("topology", file=scratch / "topology.json")),
        Part("concurrent", bench("concurrent", [*device, *wrn, *epochs, "--methods", "rigl", "--concurrent", runs]),
             share["concurrent"], collect=collect_into("concurrent", file=scratch / "concurrent.json")),
        Part("semi_structured", [python, "scripts/bench_semi_structured.py", *semi_structured, "--json",
                                 str(scratch / "semi_structured.json")], share["semi_structured"],
             collect=collect_into("semi_structured", file=scratch / "semi_structured.json")),
    ]  # fmt: skip
    for part in parts:
        part.env = {**threads, **part.env}
    return parts


def travelling_files(root: Path) -> list[Path]:
    """What the device tool sends: tracked files and untracked ones git does not ignore."""
    listed = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=root,
                            capture_output=True, check=True).stdout  # fmt: skip
    return [root / name for name in listed.decode().split("\0") if name and (root / name).is_file()]


def carry_size(root: Path, carried: list[Path], limit_mib: float) -> int:
    """Print the size of what would travel (working tree and carried folders) and return 1 if over the limit."""
    sizes = {"working tree": sum(path.stat().st_size for path in travelling_files(root))}
    for folder in carried:
        files = [path for path in folder.rglob("*") if path.is_file()] if folder.is_dir() else []
        sizes[str(folder.relative_to(root) if folder.is_relative_to(root) else folder)] = sum(
            path.stat().st_size for path in files)  # fmt: skip
        for path in sorted(files):
            print(f"  {path.stat().st_size / 2**20:8.2f} MiB  {path.relative_to(folder)}")
    total = sum(sizes.values())
    for name, size in sizes.items():
        print(f"{size / 2**20:8.2f} MiB  {name}")
    print(f"{total / 2**20:8.2f} MiB  in all (limit {limit_mib:g} MiB; the device tool takes 64)")
    if total > limit_mib * 2**20:
        print(f"error: {total / 2**20:.1f} MiB would travel, over {limit_mib:g} MiB", file=sys.stderr)
        return 1
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("results", nargs="?", type=Path, default=Path(os.environ.get("OUT") or "outputs/gpu_check"),
                        help="folder for log.txt, results.json and junit.xml (default: $OUT, else outputs/gpu_check)")
    parser.add_argument("--cpu", action="store_true", help="rehearse on the CPU: device=cpu, tiny sizes")
    parser.add_argument("--wheels", type=Path, default=ROOT / ".whl", help="the carried wheels (make gpu-wheels)")
    parser.add_argument("--site", type=Path, default=None, help="where they go (default: a temporary folder)")
    parser.add_argument("--budget", type=float, default=None, help=f"seconds for all parts (default {BUDGET_S:g}; "
                        "--cpu: none)")  # fmt: skip
    parser.add_argument("--only", default=None, help="comma-separated part names to run (default: all)")
    parser.add_argument("--carry-size", action="store_true", help="print what would travel and check its size")
    parser.add_argument("--limit-mib", type=float, default=CARRY_LIMIT_MIB)
    parser.add_argument("--environment", type=Path, default=None, metavar="JSON", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.environment is not None:
        environment(args.environment)
        return 0
    if args.carry_size:
        return carry_size(ROOT, [args.wheels], args.limit_mib)
    unknown = sorted(set(args.only.split(",")) - set(GPU_SHARES_S)) if args.only else []
    if unknown:
        parser.error(f"--only {','.join(unknown)}: not a part; choose from {','.join(GPU_SHARES_S)}")

    budget = args.budget if args.budget is not None else (float("inf") if args.cpu else BUDGET_S)
    results_dir = args.results.resolve()
    results_dir.mkdir(parents=True, exist_ok=True)
    for name in ("log.txt", "results.json", "junit.xml"):
        (results_dir / name).unlink(missing_ok=True)
    log = Log(results_dir / "log.txt")
    scratch = Path(tempfile.mkdtemp(prefix="rigl-gpu-check-"))
    site = (args.site or scratch / "site").resolve()
    shutil.rmtree(site, ignore_errors=True)
    os.environ["PYTHONPATH"] = os.pathsep.join([str(site), str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])])
    parts = plan(args.cpu, args.wheels.resolve(), site, scratch, results_dir)
    if args.only:
        parts = [part for part in parts if part.name in args.only.split(",")]
    results: dict[str, Any] = {
        "mode": "cpu rehearsal" if args.cpu else "gpu",
        "started": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "budget_s": None if math.isinf(budget) else budget,
        "wheels": sorted(path.name for path in args.wheels.glob("*.whl")),
        "parts": {},
        "total_seconds": 0.0,
    }
    log.line(f"{results['mode']} check of {ROOT} into {results_dir}; wheels from {args.wheels}, installed in {site}")
    write_results(results_dir / "results.json", results)
    start = time.monotonic()
    for index, part in enumerate(parts):
        left = budget - (time.monotonic() - start)
        if left < MIN_PART_S:
            log.line(f"part {part.name}: skipped, {max(left, 0):.0f} s of the budget left")
            outcome = Outcome("skipped", None, 0.0)
        else:
            outcome = run_part(part, time_limit(part.share_s, left, [later.share_s for later in parts[index + 1 :]]),
                               log, ROOT)  # fmt: skip
        results["parts"][part.name] = {**vars(outcome), "command": " ".join(part.command)}
        if part.collect is not None and outcome.status != "skipped":
            try:
                part.collect(part, results)
            except Exception as error:  # a figure that cannot be read must not stop the parts after it
                log.line(f"part {part.name}: its results could not be read: {type(error).__name__}: {error}")
        results["total_seconds"] = time.monotonic() - start
        write_results(results_dir / "results.json", results)
    shutil.rmtree(scratch, ignore_errors=True)
    failed = [name for name, part in results["parts"].items() if part["status"] != "passed"]
    log.line(f"done in {results['total_seconds']:.0f} s: " + (f"not clean: {', '.join(failed)}" if failed else
             "every part passed"))  # fmt: skip
    for name, row in results["targets"].items():
        verdict = {True: "pass", False: "FAIL", None: "not measured"}[row["pass"]]
        log.line(f"target {name} {row['target']}: measured {row['measured']}, {verdict}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
