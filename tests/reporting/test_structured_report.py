"""scripts/structured_report.py: the structure table and figure from runs below a folder."""

import subprocess
import sys
from pathlib import Path

import pytest

from rigl_repro.training.session import run
from tests.helpers import compose_config

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("structured")
    cells = {"static-unstructured-0": ["masking.structure=unstructured", "seed=0"],
             "static-unstructured-1": ["masking.structure=unstructured", "seed=1"],
             "static-fan_in-0": ["masking.structure=fan_in", "seed=0"],
             "rigl-nm-0": ["masking=rigl", "masking.structure=nm", "masking.density=0.5", "seed=0"]}  # fmt: skip
    for name, overrides in cells.items():
        masking = [] if any(o.startswith("masking=") for o in overrides) else ["masking=static"]
        run(compose_config(*masking, "train.epochs=1", "threads=1", *overrides), root / name)
    return root


def test_the_table_compares_each_method_s_structures_cell_by_cell(runs, tmp_path):
    result = subprocess.run([sys.executable, str(ROOT / "scripts" / "structured_report.py"), str(runs),
                             "--out-dir", str(tmp_path)], capture_output=True, text=True, check=True)  # fmt: skip
    lines = (tmp_path / "structured.md").read_text().splitlines()
    assert lines[0] == ("| Method | unstructured, d=0.1 | constant fan-in, d=0.1 | Δ | unstructured, d=0.5 | "
                        "2:4, d=0.5 | Δ |")  # fmt: skip
    static, rigl = (line.removesuffix(" |").split(" | ") for line in lines[2:4])
    assert static[0] == "| Static" and static[1].endswith("(2)")  # two seeds pooled, one configuration
    assert static[2].count("±") == 0 and static[3].startswith(("+", "-"))
    assert static[4] == static[5] == static[6] == "–"
    assert rigl[0] == "| RigL" and rigl[1] == rigl[2] == "–" and rigl[5] != "–"
    assert (tmp_path / "structured.png").stat().st_size > 0
    assert "table:" in result.stdout


def test_no_run_is_one_line(tmp_path):
    result = subprocess.run([sys.executable, str(ROOT / "scripts" / "structured_report.py"), str(tmp_path)],
                            capture_output=True, text=True)  # fmt: skip
    assert result.returncode != 0 and result.stderr.strip().count("\n") == 0 and "no finished" in result.stderr
