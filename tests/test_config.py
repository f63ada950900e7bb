from pathlib import Path

import pytest

from rigl_repro.config import compose_config


def test_overrides_compose_as_on_the_command_line():
    cfg = compose_config(["dataset=fashion_mnist", "masking=rigl", "masking.density=0.05"])
    assert (cfg.dataset.name, cfg.model.name, cfg.masking.name, cfg.masking.density) == (
        "fashion_mnist", "lenet5", "rigl", 0.05
    )
    assert "hydra" not in cfg


def test_the_hydra_node_carries_a_sweep_s_parameters():
    cfg = compose_config(["experiment=demo"], with_hydra=True)
    assert cfg.hydra.sweeper.params.masking == "dense,static,set,rigl,snfs"


def test_folder_names_never_nest_and_stay_under_the_file_system_limit():
    from rigl_repro.config import FOLDER_NAME_LIMIT, folder_name

    assert folder_name("masking.density=0.1,seed=0") == "masking.density=0.1,seed=0"  # short names unchanged
    assert folder_name("masking.custom_densities=runs/a/summary.json") == (
        "masking.custom_densities=runs%2Fa%2Fsummary.json"
    )
    assert folder_name("a=50%/b") != folder_name("a=50%2Fb")  # the escape itself is escaped
    long = ",".join(f"train.option_{i}=0.{i}123456789012345" for i in range(10))
    name = folder_name(long)
    assert len(name.encode()) == FOLDER_NAME_LIMIT and name.startswith("train.option_0=0.0123")
    assert folder_name(long) == name and folder_name(long.replace("0.9", "0.8")) != name
    assert len(folder_name("é" * 300).encode()) <= FOLDER_NAME_LIMIT  # cut on a character boundary


def test_a_run_s_folder_name_goes_through_the_resolver(tmp_path):
    import subprocess
    import sys

    root = Path(__file__).resolve().parents[1]
    overrides = ["dataset=digits", "logger.mode=disabled", "train.epochs=1", f"output_root={tmp_path}",
                 *(f"+extra_{i}=0.{i}123456789012345678" for i in range(10)), "+note=a/b"]  # fmt: skip
    result = subprocess.run([sys.executable, str(root / "main.py"), *overrides], cwd=tmp_path, capture_output=True)
    assert result.returncode == 0, result.stderr.decode()[-2000:]
    (summary,) = tmp_path.rglob("summary.json")
    assert summary.parent.parent == tmp_path / "digits-small_cnn-rigl"  # one folder level: "/" did not nest
    assert len(summary.parent.name.encode()) <= 200


def hydra_dirs(*overrides):
    """A run's ``hydra.run.dir`` and ``hydra.sweep.subdir`` as ``main.py`` resolves them, and its config."""
    from hydra.core.hydra_config import HydraConfig
    from omegaconf import OmegaConf

    cfg = compose_config(list(overrides), with_hydra=True)
    HydraConfig.instance().set_config(cfg)
    return OmegaConf.select(cfg, "hydra.run.dir"), OmegaConf.select(cfg, "hydra.sweep.subdir"), cfg


@pytest.mark.parametrize("overrides, folder", [
    (["dataset=digits", "masking=static", "masking.distribution=erk"],
     "digits-small_cnn-static/dataset=digits,masking=static,masking.distribution=erk,seed=0"),
    (["variant=rigl_sm", "masking.density=0.2", "seed=1", "scale=smoke"],
     "digits-small_cnn-rigl/masking.density=0.2,seed=1,variant=rigl_sm"),
    (["dataset=digits", "run_tag=-x", "+note=a/b"],
     "digits-small_cnn-rigl-x/dataset=digits,note=a%2Fb,run_tag=-x,seed=0"),
    ([], "cifar10-wrn22_2-rigl/seed=0"),
])  # fmt: skip
def test_hydra_names_a_run_folder_by_its_group_and_options(tmp_path, overrides, folder):
    """``<dataset>-<model>-<method><run_tag>/<options that differ from the defaults>,seed=N`` (run/folders.py),
    for a single run (``hydra.run.dir``) and a sweep's job (``hydra.sweep.subdir``) alike."""
    run, subdir, _ = hydra_dirs(*overrides, f"output_root={tmp_path}")
    assert (run, subdir) == (f"{tmp_path}/{folder}", folder)


@pytest.mark.parametrize(
    "variant, source_method, source_variant",
    [("lottery", "pruning", "pruning"), ("rigl_reinit", "rigl", "rigl_sm"), ("rigl_reinit_erk", "rigl", "rigl_sm_erk")],
)
@pytest.mark.parametrize("extra", [[], ["scale=smoke"], ["experiment=table3_lottery"], ["experiment=table1"]])
def test_a_variant_finds_its_source_run_s_folder(variant, source_method, source_variant, extra):
    point = ["masking.density=0.2", "seed=1"]
    _, _, cfg = hydra_dirs(f"variant={variant}", *point, *extra)
    group = f"{cfg.output_root}/{cfg.dataset.name}-{cfg.model.name}-{source_method}{cfg.run_tag}"
    assert cfg.source_run == f"{group}/masking.density={cfg.masking.density},seed={cfg.seed},variant={source_variant}"
    source, _, _ = hydra_dirs(f"variant={source_variant}", *point, *extra)  # the folder that run really has
    assert cfg.source_run == source
    expected = {"custom_densities": f"{source}/summary.json"}
    if variant == "lottery":
        expected.update(trained_weights=f"{source}/checkpoint.pt", initial_weights=f"{source}/initial.pt")
    else:
        expected.update(initial_mask=f"{source}/checkpoint.pt")
    assert {key: cfg.masking[key] for key in expected} == expected


@pytest.mark.parametrize(
    "override, message",
    [
        ("run_tag=é", "the override run_tag=é could not be parsed ('é' may appear only inside a quoted value); "
                      "quote its value, e.g. run_tag=\"'é'\""),
        ("train.lr=…", "the override train.lr=… could not be parsed ('…' may appear only inside a quoted value)"),
        ("run_tag=it's", "quote its value, e.g. run_tag=\"\\\"it's\\\"\""),
        ("é=1", "the override é=1 could not be parsed ('é' is not allowed in an option's name); check its spelling"),
        ("train.lr=[1", "the override train.lr=[1 could not be parsed (no viable alternative at input '[1')"),
    ],
)
@pytest.mark.parametrize("mode", [[], ["-m"]])
def test_an_override_hydra_cannot_parse_is_named_in_plain_words(override, message, mode):
    from rigl_repro.config import check_command_line

    problem = check_command_line([*mode, "dataset=digits", override])
    assert message in problem and "\n" not in problem and "Lexer" not in problem, problem


def test_the_suggested_quoting_parses_to_the_value_typed():
    import shlex

    from rigl_repro.config import check_command_line

    for value in ("é", "it's", "a b=c", "[1", "…/x"):
        suggestion = check_command_line([f"run_tag={value}"]).rsplit("e.g. ", 1)[1]
        (argument,) = shlex.split(suggestion)  # as a shell passes it on
        assert compose_config([argument]).run_tag == value
