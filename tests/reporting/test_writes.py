"""Family 2 of issue 23: everything written is atomic, and every write failure is one line.

Every writer (each table format, each figure, the demo report, the mask-dynamics figure, the CSV log, JSON
files) is made to fail on its file in three ways: a read-only folder (the temporary file cannot be made), a
full disk (the rename fails), a kill (KeyboardInterrupt before the rename). Each failure leaves the previous
file byte for byte and no temporary file; the first two are one OutputError line (exit code 2 from the
scripts), the kill propagates. We run as root here, where chmod cannot make a folder read-only, so the
failures are injected into the calls ``atomic_file`` makes, and only for the file under test.

Also summaries read on trust (family 3): a run whose summary holds a bad number is left out of a report,
named once, and the report counts only the valid runs.
"""

import errno
import json
import logging
import math
import os
import runpy
import sys
import tempfile
from pathlib import Path

import pandas as pd
import pytest
from omegaconf import OmegaConf

import rigl_repro.reporting.runs
from rigl_repro.loggers.csv import HISTORY_FILE, MASK_UPDATES_FILE, SUMMARY_CSV_FILE, CsvLogger
from rigl_repro.reporting.figures import FIGURES, mask_dynamics_figure
from rigl_repro.reporting.runs import Cell, RunIndex
from rigl_repro.reporting.tables import TABLE_NAMES, TABLES, cell_text, row_of, write_table
from rigl_repro.results import OutputError, atomic_write_json
from tests.loggers.test_csv import epoch_entry
from tests.reporting.test_reporting import write_run

SCRIPTS = Path(__file__).resolve().parents[2] / "scripts"
PREVIOUS = b"the previous file\n"


class EmptyIndex:
    """A RunIndex with no runs that composes nothing: the writers run without Hydra's cost."""

    summaries: list = []
    scale = "paper"

    def __init__(self, *args, **kwargs) -> None:
        pass

    def cell(self, experiment, overrides=()):
        return Cell([], 2, {"dataset": {"name": "cifar10"}, "model": {"name": "wrn22_2"}})

    def compose(self, experiment, overrides=()):
        return OmegaConf.create({"dataset": {"name": "cifar10"}, "model": {"name": "wrn22_2"}})

    def sweep_trials(self, dataset, variant, density):
        return pd.DataFrame(columns=["alpha", "delta_t", "val_acc", "test_acc", "test_std", "seeds"])


def finished_run(method="rigl", seed=0):
    """A sparse run's summary with what the demo report and the mask-dynamics figure read."""
    updates = [{"step": 5, "replaced": 0.2, "exploration": 0.15}]
    history = [{"epoch": 1, "step": 10, "val_acc": 0.5, "mask_updates": updates},
               {"epoch": 2, "step": 20, "val_acc": 0.6, "mask_updates": []}]  # fmt: skip
    config = {"masking": {"name": method, "distribution": "uniform", "density": 0.1}, "seed": seed,
              "dataset": {"name": "digits"}, "model": {"name": "small_cnn"}}  # fmt: skip
    return {"config": config, "method": method, "test_acc": 0.7, "val_acc": 0.6, "density": 0.1, "epochs": 2,
            "wall_time_s": 1.0, "history": history, "initial_density": 0.1, "exploration": 0.15,
            "density_all_layers": 0.1}  # fmt: skip


def runs_folder(root):
    """A folder holding one finished run, for the scripts."""
    (root / "run").mkdir(parents=True)
    (root / "run" / "summary.json").write_text(json.dumps(finished_run()))
    return root


def script(monkeypatch, name, *args):
    """Run ``scripts/<name>.py`` in this process, as ``python scripts/<name>.py args`` would."""
    monkeypatch.setattr(sys, "argv", [name, *map(str, args)])
    monkeypatch.setattr(rigl_repro.reporting.runs, "RunIndex", EmptyIndex)  # report.py imports it when run
    runpy.run_path(str(SCRIPTS / f"{name}.py"), run_name="__main__")


def csv_log(out, target):
    """The CSV logger rewriting ``target`` after its first files (which drop a stale summary.csv)."""
    logger = CsvLogger({}, out)
    logger.log(epoch_entry(1, updates=[5]), step=10)
    target.write_bytes(PREVIOUS)
    if target.name == SUMMARY_CSV_FILE:
        logger.summarize({"test_acc": 0.5})
    else:
        logger.log(epoch_entry(2, updates=[15]), step=20)


def report(target):
    """``scripts/report.py`` writing ``target``, a table's or a figure's file."""
    name = target.split(".")[0]
    return target, lambda out, mp: script(mp, "report", name, "--scale", "smoke", "--root", out, "--out", out)


# test id -> (the file written, how to write it into a folder: a function of the folder and monkeypatch)
WRITERS = {
    **{f"{name}.{suffix}": (f"{name}.{suffix}", lambda out, mp, name=name: write_table(name, EmptyIndex(), out))
       for name in TABLE_NAMES for suffix in ("md", "tex", "csv")},
    **{f"{name}.{suffix}": (f"{name}.{suffix}", lambda out, mp, draw=draw: draw(EmptyIndex(), out))
       for name, draw in FIGURES.items() for suffix in ("png", "pdf")},
    **{f"mask_dynamics.{suffix}": (f"mask_dynamics.{suffix}",
                                   lambda out, mp: mask_dynamics_figure([finished_run()], out))
       for suffix in ("png", "pdf")},
    **{name: (name, lambda out, mp, name=name: csv_log(out, out / name))
       for name in (HISTORY_FILE, MASK_UPDATES_FILE, SUMMARY_CSV_FILE)},
    "summary.json": ("summary.json", lambda out, mp: atomic_write_json(out / "summary.json", finished_run())),
    "script report.py: table4.md": report("table4.md"),
    "script report.py: fig1.pdf": report("fig1.pdf"),
    "script demo_report.py": ("accuracy.png", lambda out, mp: script(mp, "demo_report", runs_folder(out))),
    "script mask_dynamics.py": ("mask_dynamics.pdf", lambda out, mp: script(mp, "mask_dynamics", runs_folder(out))),
}  # fmt: skip


def read_only_folder(monkeypatch, target):
    """The temporary file beside ``target`` cannot be made, as in a read-only folder."""
    make = tempfile.mkstemp

    def mkstemp(*args, dir=None, prefix=None, **kwargs):
        if Path(dir) == target.parent and prefix == f".{target.name}.":
            raise OSError(errno.EROFS, "Read-only file system", str(target.parent))
        return make(*args, dir=dir, prefix=prefix, **kwargs)

    monkeypatch.setattr(tempfile, "mkstemp", mkstemp)


def failing_rename(error):
    """The rename over ``target`` raises ``error`` (the written file is whole by then)."""
    def inject(monkeypatch, target):
        rename = os.replace

        def replace(source, destination, *args, **kwargs):
            if Path(destination) == target:
                raise error
            return rename(source, destination, *args, **kwargs)

        monkeypatch.setattr(os, "replace", replace)
    return inject


FAILURES = {
    "read-only folder": (read_only_folder, OutputError, "Read-only file system"),
    "full disk": (failing_rename(OSError(errno.ENOSPC, "No space left on device")), OutputError,
                  "No space left on device"),
    "killed": (failing_rename(KeyboardInterrupt()), KeyboardInterrupt, None),
}  # fmt: skip


@pytest.mark.parametrize("failure", FAILURES)
@pytest.mark.parametrize("writer", WRITERS)
def test_a_failed_write_is_one_line_and_leaves_the_previous_file_and_no_temporary(
    tmp_path, monkeypatch, capsys, writer, failure
):
    out = tmp_path / "out"
    out.mkdir()
    name, write = WRITERS[writer]
    target = out / name
    target.write_bytes(PREVIOUS)
    inject, raised, reason = FAILURES[failure]
    inject(monkeypatch, target)
    expected = SystemExit if writer.startswith("script") and raised is OutputError else raised
    with pytest.raises(expected) as caught:
        write(out, monkeypatch)
    monkeypatch.undo()
    assert target.read_bytes() == PREVIOUS
    assert not [path.name for path in out.rglob(".*")], "a temporary file was left behind"
    line = f"{target} could not be written ({reason}); free some space or fix the folder's permissions"
    if expected is SystemExit:
        assert caught.value.code == 2
        assert capsys.readouterr().err.splitlines() == [f"error: {line}, then run the same command again"]
    elif expected is OutputError:
        assert str(caught.value).startswith(line) and "\n" not in str(caught.value)


def test_written_files_are_whole_and_replace_the_previous_ones(tmp_path):
    """Without a failure the same writers replace the previous file (the test above can fail)."""
    paths = write_table("table4", EmptyIndex(), tmp_path) + FIGURES["fig4"](EmptyIndex(), tmp_path)
    for path in paths:
        path.write_bytes(PREVIOUS)
    paths = write_table("table4", EmptyIndex(), tmp_path) + FIGURES["fig4"](EmptyIndex(), tmp_path)
    assert all(path.read_bytes() != PREVIOUS and path.stat().st_size > 100 for path in paths)
    assert (tmp_path / "fig4.png").read_bytes().startswith(b"\x89PNG")
    assert (tmp_path / "fig4.pdf").read_bytes().startswith(b"%PDF")
    assert sorted(path.name for path in tmp_path.iterdir()) == sorted(path.name for path in paths)


MISSING = object()
BAD_VALUES = {"string": "0.92", "missing": MISSING, "NaN": math.nan, "null": None, "5.0": 5.0, "-1": -1}


@pytest.mark.parametrize("bad", BAD_VALUES)
def test_a_run_with_a_bad_test_accuracy_is_left_out_named_once_and_not_counted(tmp_path, caplog, bad):
    index = RunIndex(tmp_path / "runs", "smoke")
    cell = ["variant=rigl", "masking.density=0.1"]
    write_run(index, "table2", cell, 0, 0.90)
    write_run(index, "table2", cell, 1, 0.80, name="broken")
    summary_path = tmp_path / "runs" / "broken" / "summary.json"
    summary = json.loads(summary_path.read_text())
    if BAD_VALUES[bad] is MISSING:
        del summary["test_acc"]
    else:
        summary["test_acc"] = BAD_VALUES[bad]
    summary_path.write_text(json.dumps(summary))

    with caplog.at_level(logging.WARNING):
        rebuilt = RunIndex(tmp_path / "runs", "smoke")
    assert caplog.text.count(str(summary_path)) == 1 and "test_acc" in caplog.text
    found = rebuilt.cell("table2", cell)
    assert (found.seeds, found.expected, found.values("test_acc")) == (1, 2, [90.0])
    spec = TABLES["table2"]
    row = pd.Series(row_of(spec, 0, "rigl", spec.columns[0], 0.1, found, {}))
    assert cell_text(row, bold=False, latex=False)[0] == "90.0 (1/2 seeds)"  # not "2/2" from one value


@pytest.mark.parametrize("plot, written", [("accuracy.png", "accuracy.png"), ("curves.pdf", "curves.pdf"),
                                           ("curves", "curves.png")])  # fmt: skip
def test_the_demo_plot_is_written_in_the_format_its_name_says(tmp_path, monkeypatch, plot, written):
    script(monkeypatch, "demo_report", runs_folder(tmp_path), "--plot", tmp_path / plot)
    magic = b"%PDF" if written.endswith(".pdf") else b"\x89PNG"
    assert (tmp_path / written).read_bytes().startswith(magic)
    assert not [path.name for path in tmp_path.rglob(".*")]


def test_a_demo_plot_in_an_unknown_format_is_refused_in_one_line_before_any_work(tmp_path, monkeypatch, capsys):
    with pytest.raises(SystemExit) as caught:
        script(monkeypatch, "demo_report", tmp_path / "no runs here", "--plot", tmp_path / "plot.xyz")
    err = capsys.readouterr().err.splitlines()
    assert caught.value.code == 2 and len(err) == 1
    assert err[0].startswith(f"error: --plot {tmp_path / 'plot.xyz'} has an unknown format; end it in one of: ")
    assert "png" in err[0] and not list(tmp_path.iterdir())
