"""The results notebook runs from top to bottom, from any directory and without a warning, on an output folder of
finished runs (as `jupyter execute notebooks/results.ipynb` runs it), and its pivot counts the seeds of one
configuration per cell."""

import json
from pathlib import Path

import pytest

from rigl_repro.reporting.runs import RunIndex
from tests.reporting.test_reporting import write_run

nbformat = pytest.importorskip("nbformat")  # requirements.txt: the notebook's packages
nbclient = pytest.importorskip("nbclient")

NOTEBOOK = Path(__file__).resolve().parents[2] / "notebooks" / "results.ipynb"
# A last cell, run after the notebook's in its kernel: what the test checks, as one JSON line.
PROBE = """import json
counts = by_configuration["count"]
print(json.dumps({
    "runs": len(runs), "cwd": os.getcwd(), "reported": int(table2["report_acc"].notna().sum()),
    "counts": {f"{variant}|{setting}|{density}": int(n) for (variant, setting), row in counts.iterrows()
               for density, n in row.items() if n == n},
}))"""


def test_the_notebook_runs_from_any_directory_without_warnings(tmp_path, monkeypatch):
    index = RunIndex(tmp_path / "runs", "smoke")
    for seed in (0, 1):
        write_run(index, "table2", ["variant=rigl", "masking.density=0.1"], seed, 0.9 + seed / 100)
        write_run(index, "table2", ["variant=rigl_erk", "masking.density=0.1"], seed, 0.92)
    # RigL at 0.1 in another grid (Figure 2's, at delta_t 100): another configuration, its own row
    write_run(index, "sweep_lr", ["variant=rigl", "rigl_hparams=a0.3_dt100", "train.lr=0.05", "masking.density=0.1"],
              0, 0.5)  # fmt: skip
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.setenv("RIGL_OUTPUT_ROOT", str(index.root))
    monkeypatch.setenv("RIGL_SCALE", "smoke")
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    cells = len(notebook.cells)
    notebook.cells.append(nbformat.v4.new_code_cell(PROBE))
    client = nbclient.NotebookClient(notebook, timeout=600, kernel_name="python3",
                                     resources={"metadata": {"path": str(elsewhere)}})  # fmt: skip
    client.execute()  # a cell that fails raises here
    printed = [(cell.source, output) for cell in notebook.cells[:cells] if cell.cell_type == "code"
               for output in cell.outputs if output.output_type == "stream" and output.name == "stderr"]  # fmt: skip
    assert printed == []  # no warning, no other message on stderr
    probe = json.loads(notebook.cells[-1].outputs[0].text)
    assert probe["runs"] == 5 and probe["cwd"] == str(elsewhere)
    assert probe["counts"] == {"rigl|masking.delta_t=8|0.1": 2, "rigl|masking.delta_t=100|0.1": 1, "rigl_erk||0.1": 2}
    assert probe["reported"] == 0  # small_cnn on digits: nothing to compare with the report's numbers
