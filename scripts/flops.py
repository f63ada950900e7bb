"""Print the FLOP and density table of any configuration, without training; the same Hydra config as main.py.

    python scripts/flops.py model=wrn22_2 dataset=cifar10 masking=rigl masking.density=0.1
    python scripts/flops.py dataset=cifar100 masking=snfs masking.distribution=erk flops.format=json

``flops.format=json`` prints one JSON object: ``layers`` (name, shape, size, density, dense_flops, flops)
and ``totals`` (dense_inference_flops, dense_train_flops_per_step, inference_flops, inference_relative,
train_flops, train_relative, pretraining_flops), plus ``steps``, ``update_steps`` and ``exact`` (false
when the method's densities move during training, so the totals assume they stay at the distribution's).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import NoReturn

from hydra.errors import HydraException

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from anywhere without installing

from rigl_repro.config import compose_config, composition_error  # noqa: E402
from rigl_repro.errors import ConfigError  # noqa: E402
from rigl_repro.flops.planning import plan_flops  # noqa: E402
from rigl_repro.run.build import plan_run  # noqa: E402
from rigl_repro.run.config import RunConfig  # noqa: E402


def print_table(plan: dict) -> None:
    print(f"{plan['model']} on {plan['dataset']}: {plan['method']}", end="")
    if plan["distribution"]:
        print(f", {plan['distribution']} at density {plan['density']:.4f}", end="")
    print(f", {plan['steps']:,} steps ({plan['update_steps']:,} mask updates)")
    print(f"\n{'layer':<34} {'shape':<18} {'density':>8} {'dense FLOPs':>13} {'FLOPs':>13}")
    for layer in plan["layers"]:
        shape = "x".join(map(str, layer["shape"]))
        density, dense, sparse = layer["density"], layer["dense_flops"], layer["flops"]
        print(f"{layer['name']:<34} {shape:<18} {density:8.4f} {dense:13.4g} {sparse:13.4g}")
    totals = plan["totals"]
    print(f"\ninference FLOPs per image: {totals['inference_flops']:.4g} "
          f"({totals['inference_relative']:.3f}x dense {totals['dense_inference_flops']:.4g})")
    dense_step = totals["dense_train_flops_per_step"]
    print(f"training FLOPs per image, summed over the {plan['steps']:,} steps: {totals['train_flops']:.4g} "
          f"({totals['train_relative']:.3f}x the dense 1x run; a dense step is {dense_step:.4g})")
    if not plan["exact"]:
        print("note: this method's layer densities move during training; these totals assume they stay at the "
              "distribution's. A run's summary.json holds the integrated values.")


def fail(message: str) -> NoReturn:
    """Stop with one line and exit code 2, as ``main.py`` does for a bad value."""
    print(f"error: {message}", file=sys.stderr)
    sys.exit(2)


def main(overrides: list[str]) -> None:
    if {"-h", "--help"} & set(overrides):
        print(__doc__)
        return
    try:
        cfg = compose_config(overrides)
    except HydraException as error:
        fail(composition_error(error))
    if cfg.flops.format not in ("table", "json"):
        fail(f"flops.format={cfg.flops.format!r} is not known; choose one of: table, json")
    try:
        run_plan = plan_run(RunConfig.from_hydra(cfg))
        plan = plan_flops(run_plan)
    except ConfigError as error:
        fail(str(error))
    for warning in run_plan.warnings:  # on stderr: the JSON on stdout stays one object
        print(f"warning: {warning}", file=sys.stderr)
    if cfg.flops.format == "json":
        print(json.dumps(plan, indent=2))
    else:
        print_table(plan)


if __name__ == "__main__":
    main(sys.argv[1:])
