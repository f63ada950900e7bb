"""Print the FLOP and density table of any configuration, without training; the same Hydra config as main.py.

    python scripts/flops.py model=wrn22_2 dataset=cifar10 masking=rigl masking.density=0.1
    python scripts/flops.py dataset=cifar100 masking=snfs masking.distribution=erk flops.format=json

``flops.format=json`` prints one JSON object: ``layers`` (name, shape, size, density, dense_flops, flops)
and ``totals`` (dense_inference_flops, dense_train_flops_per_step, inference_flops, inference_relative,
train_flops, train_relative, pretraining_flops), plus ``steps``, ``update_steps`` and ``exact`` (false
when the method's densities move during training, so the totals assume they stay at the distribution's).

Densities are named as in a run's summary.json: ``density`` is over the budgeted layers (the layers whose
weights count towards ``masking.density``; Uniform leaves the first layer out, dense), ``density_all_layers``
over every masked layer. The JSON has both, and the exact counts behind them: ``active_weights`` of
``budgeted_weights`` (``budgeted_layers``), ``active_weights_all_layers`` of ``weights_all_layers``, and the
``requested_density``. The table's heading says why a density differs from the requested one: each layer's
count is the distribution's density times its size rounded to a whole weight, and a layer outside the budget
stays dense.
"""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path
from typing import NoReturn

from hydra.errors import HydraException

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from anywhere without installing

from rigl_repro.config import compose_config, composition_error  # noqa: E402
from rigl_repro.errors import ConfigError  # noqa: E402
from rigl_repro.flops.planning import plan_flops  # noqa: E402
from rigl_repro.run.build import RunPlan, plan_run  # noqa: E402
from rigl_repro.run.config import RunConfig  # noqa: E402


def density_counts(plan: dict, run_plan: RunPlan, requested: float | None) -> dict:
    """The exact counts behind the plan's densities, named as in summary.json: ``density`` over the budgeted
    layers (``active_weights`` / ``budgeted_weights``), ``density_all_layers`` over every masked layer, the
    ``requested_density`` and the ``budgeted_layers``. ``distribution_density`` is the budgeted density the
    layer-wise distribution asks for before each layer's count is rounded to a whole weight."""
    layers = {layer["name"]: layer for layer in plan["layers"]}
    counts = {name: round(layer["density"] * layer["size"]) for name, layer in layers.items()}
    names = list(layers)
    budget = run_plan.method.budget(names) if plan["distribution"] else names
    budgeted = sum(layers[name]["size"] for name in budget)
    shapes = {name: tuple(layer["shape"]) for name, layer in layers.items()}
    asked = run_plan.method.distribution_densities(shapes) if plan["distribution"] else {n: 1.0 for n in names}
    return {
        "requested_density": requested,
        "density": sum(counts[name] for name in budget) / budgeted,
        "density_all_layers": sum(counts.values()) / sum(layer["size"] for layer in layers.values()),
        "distribution_density": sum(asked[name] * layers[name]["size"] for name in budget) / budgeted,
        "budgeted_layers": budget,
        "active_weights": sum(counts[name] for name in budget),
        "budgeted_weights": budgeted,
        "active_weights_all_layers": sum(counts.values()),
        "weights_all_layers": sum(layer["size"] for layer in layers.values()),
    }


def density_lines(plan: dict) -> list[str]:
    """Two lines under the table's title: ``density`` and ``density_all_layers`` as exact counts, and why each
    differs from the requested density (each layer's count rounded to a whole weight; a layer kept dense
    outside the budget; a distribution that does not ask for the requested density)."""
    requested, density, all_layers = plan["requested_density"], plan["density"], plan["density_all_layers"]
    active, budgeted = plan["active_weights"], plan["budgeted_weights"]
    line = f"density {density:.4f} over the budgeted layers: {active:,} active of {budgeted:,} weights"
    if requested is None or density == requested:
        line += f" (exactly the requested {requested:g})" if requested is not None else ""
    elif not math.isclose(plan["distribution_density"], requested, rel_tol=1e-9):
        line += (f" (the {plan['distribution']} distribution asks for {plan['distribution_density']:.4f}, not the "
                 f"requested {requested:g}; each layer's count is rounded to a whole weight)")  # fmt: skip
    else:
        wanted = requested * budgeted
        line += (f" (the requested {requested:g} is {wanted:,.1f} of them; each layer's count is rounded to a whole "
                 f"weight: {active - wanted:+g} in all)")  # fmt: skip
    outside = [layer["name"] for layer in plan["layers"] if layer["name"] not in set(plan["budgeted_layers"])]
    every = (f"density_all_layers {all_layers:.4f} over every masked layer: {plan['active_weights_all_layers']:,} "
             f"active of {plan['weights_all_layers']:,} weights")  # fmt: skip
    if outside:
        every += f" ({', '.join(outside)} stays dense, outside the budget, as {plan['distribution']} does)"
    return [line, every]


def print_table(plan: dict) -> None:
    print(f"{plan['model']} on {plan['dataset']}: {plan['method']}", end="")
    if plan["distribution"]:
        print(f", {plan['distribution']} at density {plan['requested_density']:g}", end="")
    print(f", {plan['steps']:,} steps ({plan['update_steps']:,} mask updates)")
    if plan["distribution"]:
        print("\n".join(density_lines(plan)))
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
        plan.update(density_counts(plan, run_plan, cfg.masking.get("density")))
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
