"""One folder per run configuration (issue 25): whatever the order or spelling of the overrides, with or without
a value equal to its default, two commands that compose the same run find the same folder."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from rigl_repro.config import compose_config, hydra_config
from rigl_repro.run.folders import IDENTITY_FILE, identity_digest, task_config

ROOT = Path(__file__).resolve().parents[2]


def folder(root: Path, *overrides: str) -> str:
    """The folder below ``root`` Hydra would give the run of these command-line overrides."""
    cfg = compose_config([f"output_root={root}", *overrides], with_hydra=True)
    with hydra_config(cfg):
        run_dir, subdir = OmegaConf.select(cfg, "hydra.run.dir"), OmegaConf.select(cfg, "hydra.sweep.subdir")
    assert run_dir == f"{root}/{subdir}"  # a single run and a sweep's job share their folders
    return subdir


def digest(root: Path, *overrides: str) -> str:
    cfg = compose_config([f"output_root={root}", *overrides], with_hydra=True)
    with hydra_config(cfg):
        return identity_digest(task_config(cfg))


SAME_RUN = [
    ("dataset=digits",),
    ("dataset=digits", "seed=0"),  # the default seed, given
    ("masking.density=0.10", "dataset=digits"),  # another spelling of the default density, another order
    ("masking=rigl", "dataset=digits", "masking.density=1e-1", "masking.distribution=uniform"),
    ("dataset=digits", "threads=1", "device=cpu", "logger.mode=disabled"),  # options that are not the run's
]


def test_commands_that_compose_one_run_share_its_folder(tmp_path):
    folders = {folder(tmp_path, *overrides) for overrides in SAME_RUN}
    assert folders == {"digits-small_cnn-rigl/dataset=digits,seed=0"}


@pytest.mark.parametrize("other", [("dataset=digits", "seed=1"), ("dataset=digits", "masking.density=0.2"),
                                   ("dataset=digits", "masking=set"), ("scale=smoke",)])  # fmt: skip
def test_another_run_has_another_folder(tmp_path, other):
    assert folder(tmp_path, *other) != folder(tmp_path, "dataset=digits")


def test_a_run_without_overrides_has_a_folder_of_its_own(tmp_path):
    assert folder(tmp_path) == "cifar10-wrn22_2-rigl/seed=0"
    assert folder(tmp_path, "scale=smoke") == "digits-small_cnn-rigl/seed=0"  # the scale's defaults


def test_the_name_lists_what_differs_from_the_defaults_in_key_order(tmp_path):
    name = folder(tmp_path, "scale=smoke", "train.lr=0.02000", "masking.distribution=erk", "masking=static", "seed=2")
    assert name == "digits-small_cnn-static/masking=static,masking.distribution=erk,seed=2,train.lr=0.02"


def test_a_folder_that_records_the_run_is_found_under_any_name(tmp_path):
    """A folder holding this run's identity (an earlier command's spelling, a run of the earlier scheme) is
    reused, not trained again beside it."""
    earlier = tmp_path / "digits-small_cnn-rigl" / "dataset=digits,masking.density=0.1"
    earlier.mkdir(parents=True)
    (earlier / IDENTITY_FILE).write_text(json.dumps({"digest": digest(tmp_path, "dataset=digits")}))
    assert folder(tmp_path, "dataset=digits") == "digits-small_cnn-rigl/dataset=digits,masking.density=0.1"
    assert folder(tmp_path, "dataset=digits", "seed=1") == "digits-small_cnn-rigl/dataset=digits,seed=1"


def test_a_finished_run_of_the_earlier_scheme_is_found_by_its_summary(tmp_path):
    cfg = compose_config(["dataset=digits", f"output_root={tmp_path}"])  # as main.py receives it
    legacy = tmp_path / "digits-small_cnn-rigl" / "dataset=digits,masking=rigl"
    legacy.mkdir(parents=True)
    (legacy / "summary.json").write_text(json.dumps({"config": OmegaConf.to_container(cfg, resolve=True)}))
    assert folder(tmp_path, "masking=rigl", "dataset=digits") == "digits-small_cnn-rigl/dataset=digits,masking=rigl"


def test_an_unfinished_run_of_the_earlier_scheme_is_found_by_its_old_name(tmp_path):
    legacy = tmp_path / "digits-small_cnn-rigl" / "dataset=digits,masking=rigl"  # Hydra's override_dirname
    legacy.mkdir(parents=True)
    (legacy / "checkpoint.pt").write_bytes(b"")
    assert folder(tmp_path, "masking=rigl", "dataset=digits") == "digits-small_cnn-rigl/dataset=digits,masking=rigl"
    assert folder(tmp_path, "dataset=digits") == "digits-small_cnn-rigl/dataset=digits,seed=0"  # not its name


def test_a_name_that_holds_another_run_gets_the_run_s_digest(tmp_path):
    named = tmp_path / "digits-small_cnn-rigl" / "dataset=digits,seed=0"
    named.mkdir(parents=True)
    (named / IDENTITY_FILE).write_text(json.dumps({"digest": "0" * 16}))
    expected = f"digits-small_cnn-rigl/dataset=digits,seed=0-{digest(tmp_path, 'dataset=digits')}"
    assert folder(tmp_path, "dataset=digits") == expected


def test_a_lottery_ticket_reads_the_folder_its_pruning_run_trained_in(tmp_path):
    cfg = compose_config(["scale=smoke", "variant=lottery", "masking.density=0.2", "seed=1",
                          f"output_root={tmp_path}"], with_hydra=True)  # fmt: skip
    with hydra_config(cfg):
        source = OmegaConf.select(cfg, "source_run")
    pruning = folder(tmp_path, "scale=smoke", "variant=pruning", "masking.density=0.2", "seed=1")
    assert pruning == "digits-small_cnn-pruning/masking.density=0.2,seed=1,variant=pruning"
    assert source == f"{tmp_path}/{pruning}"


@pytest.mark.slow  # two trainings through main.py; the folder each command gets is tested in-process above
def test_two_spellings_train_once(tmp_path):
    """The second command reuses the first one's run instead of training it again in another folder."""
    common = ["train.epochs=1", "logger.mode=disabled", "threads=1", f"output_root={tmp_path}"]
    for overrides in (["dataset=digits", "seed=0"], ["masking.density=0.10", "dataset=digits"]):
        result = subprocess.run([sys.executable, str(ROOT / "main.py"), *common, *overrides], cwd=tmp_path,
                                capture_output=True, text=True, timeout=600)  # fmt: skip
        assert result.returncode == 0, result.stderr[-2000:]
    assert "already holds this finished run" in result.stdout + result.stderr
    (group,) = [path for path in tmp_path.iterdir() if path.is_dir()]
    assert [path.name for path in group.iterdir()] == ["dataset=digits,seed=0,train.epochs=1"]
    recorded = json.loads((group / "dataset=digits,seed=0,train.epochs=1" / IDENTITY_FILE).read_text())
    assert recorded["digest"] == digest(tmp_path, "dataset=digits", "train.epochs=1")
