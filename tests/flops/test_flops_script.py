import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def flops_py(*args, cwd):
    command = [sys.executable, str(ROOT / "scripts" / "flops.py"), *args]
    return subprocess.run(command, cwd=cwd, capture_output=True, text=True)


def test_json_output_has_the_documented_keys_and_writes_nothing(tmp_path):
    result = flops_py("model=wrn22_2", "dataset=cifar10", "masking=rigl", "masking.density=0.1", "flops.format=json",
                      cwd=tmp_path)  # fmt: skip
    assert result.returncode == 0, result.stderr
    plan = json.loads(result.stdout)
    assert {"layers", "totals", "steps", "update_steps", "exact", "density"} <= set(plan)
    assert set(plan["layers"][0]) == {"name", "shape", "size", "density", "dense_flops", "flops"}
    assert {"dense_inference_flops", "dense_train_flops_per_step", "inference_flops", "inference_relative",
            "train_flops", "train_relative", "pretraining_flops"} == set(plan["totals"])  # fmt: skip
    assert plan["steps"] == 250 * 352 and plan["update_steps"] == 659 and plan["exact"] is True
    assert round(plan["totals"]["inference_relative"], 2) == 0.10
    assert list(tmp_path.iterdir()) == []


def test_densities_are_exact_counts_named_as_in_a_summary(tmp_path):
    """Uniform keeps the first layer dense, outside the budget: ``density`` (budgeted, as in summary.json) is the
    requested 0.1 but for each layer's rounding, ``density_all_layers`` is above it."""
    result = flops_py("model=wrn22_2", "dataset=cifar10", "masking=rigl", "masking.density=0.1", "flops.format=json",
                      cwd=tmp_path)  # fmt: skip
    plan = json.loads(result.stdout)
    layers = plan["layers"]
    counts = {layer["name"]: round(layer["density"] * layer["size"]) for layer in layers}
    first = layers[0]["name"]
    assert plan["budgeted_layers"] == [layer["name"] for layer in layers[1:]] and counts[first] == layers[0]["size"]
    assert plan["active_weights"] == sum(counts[name] for name in plan["budgeted_layers"])
    assert plan["budgeted_weights"] == sum(layer["size"] for layer in layers[1:])
    assert plan["active_weights_all_layers"] == sum(counts.values())
    assert plan["weights_all_layers"] == sum(layer["size"] for layer in layers)
    assert plan["density"] == plan["active_weights"] / plan["budgeted_weights"] != 0.1  # rounding: a few weights
    assert abs(plan["active_weights"] - 0.1 * plan["budgeted_weights"]) < len(layers)
    assert plan["density_all_layers"] == plan["active_weights_all_layers"] / plan["weights_all_layers"]
    assert plan["density_all_layers"] > 0.1003 > plan["density"] > 0.0999 and plan["requested_density"] == 0.1


def test_the_table_heading_explains_a_density_that_is_not_the_requested_one(tmp_path):
    lines = flops_py("model=wrn22_2", "dataset=cifar10", "masking=rigl", "masking.density=0.1", cwd=tmp_path).stdout
    heading = lines.splitlines()[:3]
    assert heading == [
        "wrn22_2 on cifar10: rigl, uniform at density 0.1, 88,000 steps (659 mask updates)",
        ("density 0.1000 over the budgeted layers: 107,650 active of 1,076,480 weights (the requested 0.1 is "
         "107,648.0 of them; each layer's count is rounded to a whole weight: +2 in all)"),
        ("density_all_layers 0.1004 over every masked layer: 108,082 active of 1,076,912 weights (conv1.weight stays "
         "dense, outside the budget, as uniform does)"),
    ]  # fmt: skip
    erk = flops_py("model=wrn22_2", "dataset=cifar10", "masking=rigl", "masking.distribution=erk", cwd=tmp_path)
    assert erk.stdout.splitlines()[2] == (  # every layer is budgeted: the two densities agree
        "density_all_layers 0.1000 over every masked layer: 107,688 active of 1,076,912 weights"
    )


def test_a_density_met_exactly_or_set_by_the_distribution_says_so(capsys):
    load_script().main(["dataset=digits", "masking=rigl"])
    lines = capsys.readouterr().out.splitlines()
    assert lines[1] == ("density 0.1000 over the budgeted layers: 9,344 active of 93,440 weights (exactly the "
                        "requested 0.1)")  # fmt: skip
    densities = "features.0.weight:1.0,features.3.weight:0.3,features.6.weight:0.2,fc.weight:0.5"
    custom = f"masking.custom_densities={{{densities}}}"
    load_script().main(["dataset=digits", "masking=rigl", "masking.distribution=custom", custom])
    lines = capsys.readouterr().out.splitlines()
    assert lines[1] == ("density 0.2262 over the budgeted layers: 21,204 active of 93,728 weights (the custom "
                        "distribution asks for 0.2262, not the requested 0.1; each layer's count is rounded to a whole "
                        "weight)")  # fmt: skip


def test_table_output(tmp_path):  # refusals: test_every_refusal_is_one_line_with_main_py_s_exit_code, in-process
    table = flops_py("dataset=cifar100", "masking=snfs", cwd=tmp_path)
    assert table.returncode == 0 and "inference FLOPs per image" in table.stdout and "note:" in table.stdout


def load_script():
    """scripts/flops.py as a module, to call its ``main`` in this process."""
    spec = importlib.util.spec_from_file_location("flops_script", ROOT / "scripts" / "flops.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("overrides, message", [
    (["masking.density=3"], "error: masking.density=3 is out of range; expected a value in (0.0, 1.0]"),  # its own
    (["train.length_multiplier=1e-9"], "error: train.length_multiplier=1e-09 scales train.epochs=30"),  # the plan's
    (["flops.format=xml"], "error: flops.format='xml' is not known; choose one of: table, json"),
    (["dataset=nope"], "error: In 'config': Could not find 'dataset/nope'; choose one of: cifar10,"),  # Hydra's
])  # fmt: skip
def test_every_refusal_is_one_line_with_main_py_s_exit_code(capsys, overrides, message):
    with pytest.raises(SystemExit) as stopped:
        load_script().main(["dataset=digits", *overrides])
    captured = capsys.readouterr()
    assert stopped.value.code == 2 and captured.out == ""
    (line,) = captured.err.strip().splitlines()
    assert line.startswith(message)


def test_a_degenerate_run_is_planned_with_its_warning_on_stderr(capsys):
    load_script().main(["dataset=digits", "masking.delta_t=1000", "flops.format=json"])
    captured = capsys.readouterr()
    assert json.loads(captured.out)["update_steps"] == 0  # the JSON on stdout stays one object
    assert captured.err.strip().splitlines() == [
        "warning: masking.delta_t=1000 leaves rigl no topology update in this run's 600 steps: its masks would stay "
        "as they start; lower masking.delta_t or train longer"
    ]
