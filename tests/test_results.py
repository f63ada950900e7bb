"""A run's summary file, and files written whole or not at all."""

import errno
import json
import logging
import os

import pytest

from rigl_repro.results import (
    OutputError,
    SummaryError,
    atomic_file,
    atomic_write_json,
    collect_summaries,
    new_file_mode,
    read_summary,
)


def test_a_summary_is_written_whole_and_read_back(tmp_path):
    assert read_summary(tmp_path) is None
    summary = {"config": {"seed": 0}, "test_acc": 0.9}
    atomic_write_json(tmp_path / "summary.json", summary)
    assert read_summary(tmp_path) == summary
    assert json.loads((tmp_path / "summary.json").read_text()) == summary
    assert (tmp_path / "summary.json").stat().st_mode & 0o777 == new_file_mode()  # not 0600: others may read it


@pytest.mark.parametrize("umask, mode", [(0o022, 0o644), (0o027, 0o640), (0o077, 0o600)])
def test_written_files_follow_the_umask(tmp_path, umask, mode):
    previous = os.umask(umask)
    try:
        atomic_write_json(tmp_path / "summary.json", {"config": {}})
    finally:
        os.umask(previous)
    assert (tmp_path / "summary.json").stat().st_mode & 0o777 == mode
    assert [path.name for path in tmp_path.iterdir()] == ["summary.json"]  # no temporary file left behind


@pytest.mark.parametrize(
    "content, message",
    [("{not json", "is not valid JSON"), ("[1, 2]", "is not a run summary"),
     ('{"test_acc": 1}', "is not a run summary")],  # fmt: skip
)
def test_a_corrupt_summary_is_named_in_one_line_and_reports_go_on(tmp_path, caplog, content, message):
    for name, text in (("good", '{"config": {"seed": 0}}'), ("bad", content)):
        (tmp_path / name).mkdir()
        (tmp_path / name / "summary.json").write_text(text)
    with pytest.raises(SummaryError, match=f"bad/summary.json {message}.*delete it"):
        read_summary(tmp_path / "bad")
    with caplog.at_level(logging.WARNING):
        summaries = collect_summaries(tmp_path)
    assert [summary["run_dir"] for summary in summaries] == [str(tmp_path / "good")]
    assert "left out 1 unreadable run(s)" in caplog.text and "bad/summary.json" in caplog.text


def test_a_failed_write_leaves_the_old_file_and_no_temporary(tmp_path):
    path = tmp_path / "summary.json"
    atomic_write_json(path, {"config": {}, "old": True})
    with pytest.raises(OutputError, match=r"summary.json could not be written \(No space left on device\); free"):
        with atomic_file(path) as temporary:
            temporary.write_text("half")
            raise OSError(errno.ENOSPC, "No space left on device")
    assert json.loads(path.read_text())["old"] and [p.name for p in tmp_path.iterdir()] == ["summary.json"]
