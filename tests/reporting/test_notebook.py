"""The results notebook runs from top to bottom on an output folder of finished runs."""

import json
import os
from pathlib import Path

import matplotlib

from rigl_repro.reporting.runs import RunIndex
from tests.reporting.test_reporting import write_run

NOTEBOOK = Path(__file__).resolve().parents[2] / "notebooks" / "results.ipynb"


def test_every_code_cell_runs(tmp_path, monkeypatch):
    matplotlib.use("Agg")
    index = RunIndex(tmp_path / "outputs" / "smoke", "smoke")
    for seed in (0, 1):
        write_run(index, "table2", ["variant=rigl", "masking.density=0.1"], seed, 0.9 + seed / 100)
        write_run(index, "table2", ["variant=rigl_erk", "masking.density=0.1"], seed, 0.92)
    (tmp_path / "notebooks").mkdir()
    monkeypatch.chdir(tmp_path / "notebooks")
    namespace: dict = {}
    for cell in json.loads(NOTEBOOK.read_text())["cells"]:
        if cell["cell_type"] == "code":
            exec("".join(cell["source"]), namespace)  # noqa: S102 - the notebook is ours
    assert len(namespace["runs"]) == 4
    assert namespace["table2"].set_index(["variant", "density"]).loc[("rigl", 0.1), "seeds"] == 2
    assert os.getcwd().endswith("notebooks")
