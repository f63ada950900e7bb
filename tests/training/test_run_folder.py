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
    kept = [LOCK_FILE, ".settings.json.bak", "checkpoint.pt", "summary.json"]
    for name in (".summary.json.x1y2z3w4", ".checkpoint.pt.abcdefgh", *kept):
        (tmp_path / name).write_text("")
    removed = sorted(path.name for path in remove_temporary_files(tmp_path))
    assert removed == [".checkpoint.pt.abcdefgh", ".summary.json.x1y2z3w4"]
    assert sorted(path.name for path in tmp_path.iterdir()) == sorted(kept)


def test_a_sweep_waits_for_the_folder_instead_of_failing(tmp_path):
    holder = (
        "import sys, time; from pathlib import Path; from rigl_repro.training.run_folder import run_folder_lock\n"
        "with run_folder_lock(Path(sys.argv[1])):\n"
        "    print('held', flush=True); time.sleep(1); (Path(sys.argv[1]) / 'done').write_text('')"
    )
    process = subprocess.Popen([sys.executable, "-c", holder, str(tmp_path)], stdout=subprocess.PIPE, text=True)
    assert process.stdout.readline().strip() == "held"
    with run_folder_lock(tmp_path, wait=True):  # blocks until the holder leaves its block, then takes the folder
        assert (tmp_path / "done").exists() and str(os.getpid()) in (tmp_path / LOCK_FILE).read_text()
    process.wait()
