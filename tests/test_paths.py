"""Family 1 of issue 23: every path the project writes resolves inside its root. Run-folder names built from
config values are encoded (one folder name each, length-bounded with a hash), an empty or unusable
``output_root`` is refused, and a refused run creates nothing."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from rigl_repro.config import (
    FOLDER_NAME_LIMIT,
    check_command_line,
    compose_config,
    folder_name,
    hydra_config,
    output_root_problem,
)
from rigl_repro.run.folders import group_folder, options_folder

ROOT = Path(__file__).resolve().parents[1]

HOSTILE = [  # values that would climb out of output_root, nest, or overflow a file name if written as they are
    "/../../escape",
    "x/../../../../escaped",
    "../../../esc",
    "..",
    ".",
    "/etc/cron.d/x",
    "a/./b/../../..",
    "%2F..%2F..",  # an already-escaped climb
    "..\\..\\win",
    "line\nbreak\ttab",
    "odd\udcffbyte",  # an undecodable byte of the command line (surrogate-escaped)
    "x" * 300,
    "é" * 150,  # 300 bytes
    "../" * 100,
]
FIELDS = ["run_tag", "dataset.name", "model.name", "masking.name", "override"]


def folder_for(field: str, value: str) -> str:
    """The run folder (below output_root) a run with ``value`` in ``field`` would write into."""
    config = {"dataset": {"name": "digits"}, "model": {"name": "small_cnn"}, "masking": {"name": "rigl"},
              "run_tag": ""}  # fmt: skip
    options = {"seed": 0}
    if field == "override":
        options.update({"note": value, value: "x"})  # a value, and a key, of the options part
    else:
        group, key = field.split(".") if "." in field else (None, field)
        (config[group] if group else config)[key] = value
    return f"{group_folder(config)}/{options_folder(options)}"


def assert_inside(root: Path, folder: str) -> None:
    """``folder`` is two folder names below ``root``, each a real name of at most the limit, never climbing."""
    parts = folder.split("/")
    assert len(parts) == 2, parts
    for part in parts:
        assert part not in (".", "..") and len(part.encode(errors="surrogateescape")) <= FOLDER_NAME_LIMIT, part
    resolved = os.path.normpath(os.path.join(root, folder))
    assert os.path.commonpath([root, resolved]) == str(root) and resolved != str(root), resolved


@pytest.mark.parametrize("field", FIELDS)
@pytest.mark.parametrize("value", HOSTILE, ids=[repr(value)[:24] for value in HOSTILE])
def test_a_run_folder_stays_inside_output_root_whatever_the_value(tmp_path, field, value):
    assert_inside(tmp_path / "runs", folder_for(field, value))


@pytest.mark.parametrize("field", FIELDS)
def test_hostile_values_never_share_a_folder(field):
    folders = [folder_for(field, value) for value in HOSTILE]
    assert len(set(folders)) == len(folders)


@pytest.mark.parametrize(
    "value", ["digits", "fashion_mnist", "-all-train-images", "masking.density=0.1", "a,b=c", "v1.2", "x" * 60]
)
@pytest.mark.parametrize("field", FIELDS)
def test_an_ordinary_value_is_written_as_it_is(field, value):
    """Only unsafe or over-long names are changed."""
    groups = {"dataset.name": f"{value}-small_cnn-rigl", "model.name": f"digits-{value}-rigl",
              "masking.name": f"digits-small_cnn-{value}", "run_tag": f"digits-small_cnn-rigl{value}"}  # fmt: skip
    options = {"seed": 0, "note": value, value: "x"} if field == "override" else {"seed": 0}
    leaf = ",".join(f"{key}={item}" for key, item in sorted(options.items()))
    assert folder_for(field, value) == f"{groups.get(field, 'digits-small_cnn-rigl')}/{leaf}"


def test_a_name_that_climbs_or_nests_is_escaped_and_a_long_one_hashed():
    assert folder_name("..") == "%2E%2E" and folder_name(".") == "%2E" and folder_name("...") == "..."
    assert folder_name("../x") == "..%2Fx" and folder_name("%2E%2E") == "%252E%252E"  # the escape is escaped
    long = folder_name("x" * 300)
    assert len(long.encode()) == FOLDER_NAME_LIMIT and long.startswith("x" * 100) and long != folder_name("x" * 301)


@pytest.mark.parametrize("field", ["run_tag", "dataset.name", "model.name", "masking.name"])
@pytest.mark.parametrize("value", ["x/../../../../escaped", "../../../esc", "y" * 300])
def test_hydra_s_run_dir_stays_inside_output_root(tmp_path, field, value):
    """The folder Hydra itself resolves (``hydra.run.dir`` of conf/config.yaml) for a hostile value."""
    root = tmp_path / "runs"
    cfg = compose_config([f"output_root={root}", "dataset=digits", f"{field}='{value}'"], with_hydra=True)
    with hydra_config(cfg):
        run, subdir = OmegaConf.select(cfg, "hydra.run.dir"), OmegaConf.select(cfg, "hydra.sweep.subdir")
    assert run == f"{root}/{subdir}"
    assert_inside(root, subdir)


@pytest.mark.parametrize(
    "value, message",
    [
        ("", "output_root='' is empty"),
        ("' '", "output_root=' ' is empty"),
        ("null", "output_root=null is empty"),
        ("/dev/null/runs", "output_root=/dev/null/runs cannot be written (/dev/null is not a folder)"),
        ("{file}/runs", "output_root={file}/runs cannot be written ({file} is not a folder)"),
        ("{file}", "output_root={file} cannot be written ({file} is not a folder)"),
        ("{tmp}/" + "n" * 300, "cannot be written (File name too long)"),
    ],
)
def test_an_unusable_output_root_is_refused_before_anything_is_made(tmp_path, value, message):
    file = tmp_path / "a-file"
    file.write_text("")
    value, message = (text.format(file=file, tmp=tmp_path) for text in (value, message))
    before = sorted(tmp_path.rglob("*"))
    for arguments in (["dataset=digits"], ["-m", "dataset=digits", "masking=rigl,static"]):
        problem = check_command_line([*arguments, f"output_root={value}"])
        assert problem and message in problem and "\n" not in problem, problem
        assert problem.endswith(("; choose a folder you can write to", "e.g. output_root=outputs/runs"))
    assert sorted(tmp_path.rglob("*")) == before


@pytest.mark.parametrize("value", ["outputs/runs", "{tmp}/new/deeper", "{tmp}", "/tmp/../{tmp}"])
def test_a_usable_output_root_passes(tmp_path, value):
    assert output_root_problem(value.format(tmp=tmp_path)) is None
    assert not (tmp_path / "new").exists()


def test_a_refused_single_run_is_refused_before_hydra_starts(tmp_path):
    """What Hydra would create a folder for (a run config that does not validate) is refused by the check."""
    problem = check_command_line(["dataset=digits", f"output_root={tmp_path}", "masking.name=../../../esc_m"])
    assert problem.startswith("masking.name='../../../esc_m' is not a known method"), problem
    assert check_command_line(["dataset=digits", f"output_root={tmp_path}", "run_tag=x/../../../../escaped"]) is None
    assert list(tmp_path.iterdir()) == []


def listing(folder: Path) -> set[Path]:
    return set(folder.rglob("*"))


def main_py(cwd: Path, *arguments: str) -> subprocess.CompletedProcess:
    """``main.py`` on the embedded dataset for one epoch; Hydra's flags (``-m``) first, as its parser wants."""
    flags = [argument for argument in arguments if argument.startswith("-")]
    overrides = [argument for argument in arguments if not argument.startswith("-")]
    command = [sys.executable, str(ROOT / "main.py"), *flags, "dataset=digits", "logger.mode=disabled",
               "train.epochs=1", *overrides]  # fmt: skip
    return subprocess.run(command, cwd=cwd, capture_output=True, text=True, timeout=300)


@pytest.mark.parametrize(
    "overrides, message",
    [
        (["output_root="], "error: output_root='' is empty"),
        (["output_root={root}", "masking.name=../../../esc_m"], "error: masking.name='../../../esc_m' is not"),
        (["output_root={root}", "run_tag=é"], "error: the override run_tag=é could not be parsed"),
    ],
)
def test_main_refuses_a_single_run_in_one_line_and_creates_nothing(tmp_path, overrides, message):
    work = tmp_path / "a" / "b"
    work.mkdir(parents=True)
    before, at_fs_root = listing(tmp_path), Path("/digits-small_cnn-rigl").exists()
    result = main_py(work, *(item.format(root=work / "runs") for item in overrides))
    output = (result.stdout + result.stderr).strip().splitlines()
    assert result.returncode == 2 and len(output) == 1 and output[0].startswith(message), output
    assert listing(tmp_path) == before
    assert Path("/digits-small_cnn-rigl").exists() == at_fs_root


def test_a_sweep_of_hostile_values_writes_only_inside_output_root(tmp_path):
    """A grid whose group names climb and overflow: its runs land inside output_root; a hostile method name is
    refused in one line before any run starts, and nothing is written."""
    work, root = tmp_path / "a" / "b", tmp_path / "a" / "b" / "runs"
    work.mkdir(parents=True)
    before = listing(tmp_path)
    refused = main_py(work, "-m", f"output_root={root}", "masking.name=../../../esc_m,rigl")
    assert refused.returncode == 2 and "Traceback" not in refused.stdout + refused.stderr
    (line,) = (refused.stdout + refused.stderr).strip().splitlines()
    assert "masking.name='../../../esc_m' is not a known method" in line
    assert listing(tmp_path) == before
    result = main_py(work, "-m", f"output_root={root}", "dataset.name=../../../esc_ds",
                     f"run_tag=x/../../../../{'y' * 300}", "seed=0,1")  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]
    assert "Traceback" not in result.stdout + result.stderr
    created = listing(tmp_path) - before
    assert created and all(path == root or root in path.parents for path in created), sorted(created)[:5]
    summaries = list(root.rglob("summary.json"))
    assert len(summaries) == 2 and all(summary.parent.parent.parent == root for summary in summaries)