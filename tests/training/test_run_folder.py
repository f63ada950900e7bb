import os
import subprocess
import sys

import pytest

from rigl_repro.training.run_folder import LOCK_FILE, RunFolderBusy, remove_temporary_files, run_folder_lock


def test_a_second_holder_is_refused_naming_the_first(tmp_path):
    with run_folder_lock(tmp_path / "run"):
        with pytest.raises(RunFolderBusy, match=rf"run is in use by process {os.getpid()} on .*; wait"):
            with run_folder_lock(tmp_path / "run"):
                pass
    with run_folder_lock(tmp_path / "run"):  # released at the end of the block
        pass


def test_the_lock_of_a_killed_process_is_taken_over(tmp_path):
    holder = "import sys, os; from pathlib import Path; from rigl_repro.training.run_folder import run_folder_lock\n" \
             "with run_folder_lock(Path(sys.argv[1])): os.kill(os.getpid(), 9)"  # fmt: skip
    result = subprocess.run([sys.executable, "-c", holder, str(tmp_path)], capture_output=True)
    assert result.returncode == -9 and "process" in (tmp_path / LOCK_FILE).read_text()
    with run_folder_lock(tmp_path):
        assert str(os.getpid()) in (tmp_path / LOCK_FILE).read_text()


def test_temporary_files_of_a_killed_write_are_removed(tmp_path):
    for name in (".summary.json.x1y2", ".checkpoint.pt.abc", "checkpoint.pt", "summary.json", LOCK_FILE):
        (tmp_path / name).write_text("")
    removed = sorted(path.name for path in remove_temporary_files(tmp_path))
    assert removed == [".checkpoint.pt.abc", ".summary.json.x1y2"]
    assert sorted(path.name for path in tmp_path.iterdir()) == [LOCK_FILE, "checkpoint.pt", "summary.json"]
