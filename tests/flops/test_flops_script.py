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
