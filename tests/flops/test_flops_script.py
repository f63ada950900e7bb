import json
import subprocess
import sys
from pathlib import Path

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


def test_table_output_and_a_bad_option(tmp_path):
    table = flops_py("dataset=cifar100", "masking=snfs", cwd=tmp_path)
    assert table.returncode == 0 and "inference FLOPs per image" in table.stdout and "note:" in table.stdout
    bad = flops_py("masking.density=3", cwd=tmp_path)
    assert bad.returncode == 1 and bad.stderr.strip().startswith("error: masking.density=3 is out of range")
