"""The Fashion-MNIST examples (examples/*.py) and their table (scripts/examples_table.py), run as a user runs
them, at a tiny size: the record they write, the density they reach, an accuracy above chance, and a table that
resumes from its records instead of training again. They need the real data and never download it: they skip
unless Debian's dataset-fashion-mnist is installed (CI installs it) or $RIGL_DATA holds FashionMNIST/raw."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from rigl_repro.data.fashion_mnist import RAW_FILES, load_fashion_mnist

ROOT = Path(__file__).resolve().parent.parent
DEBIAN = Path("/usr/share/datasets/fashion-mnist")
KEYS = {"model", "method", "density", "seed", "epochs", "test_acc", "budgeted_density", "wall_s", "threads"}
# 2 epochs of 2,048 images in batches of 64: 64 steps, a topology update every 10 (RigL's drop-and-grow runs).
TINY = ["--epochs", "2", "--train-subset", "2048", "--test-subset", "500"]


def configured_root() -> Path | None:
    root = os.environ.get("RIGL_DATA")
    if root and all((Path(root) / "FashionMNIST" / "raw" / name).is_file() for name in RAW_FILES):
        return Path(root)
    return None


HAVE_DATA = DEBIAN.is_dir() or configured_root() is not None or bool(os.environ.get("CI"))
pytestmark = pytest.mark.skipif(
    not HAVE_DATA, reason="Fashion-MNIST is not installed (apt-get install dataset-fashion-mnist, or set RIGL_DATA)"
)


@pytest.fixture(scope="module")
def data_root(tmp_path_factory) -> Path:
    """A data folder holding FashionMNIST/raw, extracted once from Debian's package (never downloaded)."""
    root = configured_root()
    if root is not None:
        return root
    root = tmp_path_factory.mktemp("data")
    load_fashion_mnist(root, str(DEBIAN), False, None)
    return root


def run(script: str, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, script, *args], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=300, check=False)  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    return done


@pytest.mark.parametrize("model, method", [  # each example sparse by default; dense too with make test-slow
    ("mlp", "rigl"),
    ("vit", "rigl"),
    pytest.param("mlp", "dense", marks=pytest.mark.slow),
    pytest.param("vit", "dense", marks=pytest.mark.slow),
])  # fmt: skip
def test_an_example_trains_and_writes_its_record(tmp_path, data_root, model, method):
    out = tmp_path / "record.json"
    options = ["--method", method, "--seed", "1", "--batch-size", "64", "--delta-t", "10", *TINY]
    done = run(f"examples/{model}_fashion_mnist.py", *options, "--data-root", str(data_root), "--no-download",
               "--json", str(out))  # fmt: skip
    record = json.loads(out.read_text())
    assert KEYS <= set(record)
    assert (record["model"], record["method"], record["seed"], record["epochs"]) == (model, method, 1, 2)
    assert record["threads"] == 1 and record["wall_s"] > 0
    assert record["density"] == (1.0 if method == "dense" else 0.1)
    assert record["budgeted_density"] == pytest.approx(record["density"], abs=0.01)
    assert record["test_acc"] > 0.2, record  # chance is 0.1; these runs reach 0.35-0.5
    last = done.stdout.strip().splitlines()[-1]
    assert last.startswith(f"{model} {method} seed 1: test accuracy {record['test_acc']:.4f}"), last


def load_table_script():
    """scripts/examples_table.py as a module (scripts/ is not a package): run in-process, its runs still in
    subprocesses."""
    spec = importlib.util.spec_from_file_location("examples_table", ROOT / "scripts" / "examples_table.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_table_writes_its_rows_and_a_second_run_reuses_the_records(tmp_path, data_root, capsys, monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    table = load_table_script()
    out_json, out_md = tmp_path / "results" / "results.json", tmp_path / "examples.md"
    args = ["--models", "mlp", "--methods", "dense", "rigl", "--seeds", "0", *TINY, "--data-root", str(data_root),
            "--out-json", str(out_json), "--out-md", str(out_md)]  # fmt: skip
    table.main(args)
    first = capsys.readouterr().out
    assert first.count("training ...") == 2 and "reused" not in first
    records = {path.name: path.read_text() for path in (out_json.parent / "runs").iterdir()}
    assert sorted(records) == ["mlp_dense_seed0.json", "mlp_rigl_seed0.json"]
    runs = json.loads(out_json.read_text())["runs"]
    assert [(r["model"], r["method"], r["seed"]) for r in runs] == [("mlp", "dense", 0), ("mlp", "rigl", 0)]

    text = out_md.read_text()
    rows = [line for line in text.splitlines() if line.startswith("| mlp |")]
    assert len(rows) == 2
    dense, rigl = ([cell.strip() for cell in row.strip("|").split("|")] for row in rows)
    assert dense[:2] == ["mlp", "Dense"] and dense[3:5] == ["1", "1.0000"]
    assert rigl[:2] == ["mlp", "RigL"] and rigl[3:5] == ["1", "0.1000"]
    for row, record in zip((dense, rigl), runs):
        assert row[2] == f"{100 * record['test_acc']:.2f} ± 0.00"
    assert "not all of static, SET and RigL ran" in text and "Not the default data" in text

    started = time.perf_counter()
    table.main(args)
    second = capsys.readouterr().out
    assert second.count("reused") == 2 and "training ..." not in second
    assert {path.name: path.read_text() for path in (out_json.parent / "runs").iterdir()} == records
    assert json.loads(out_json.read_text())["runs"] == runs
    assert time.perf_counter() - started < 10  # no training: reading the records and writing the markdown
