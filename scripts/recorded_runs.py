"""Record a set of small runs, or check that this checkout trains them exactly as recorded.

A redesign must keep behaviour bit for bit. This script trains the same commands (every method at smoke scale,
a lottery ticket found through its pruning run, and a run on two gloo processes) and compares what they
produced with a recording made by an earlier commit: the per-epoch history, validation and test accuracy,
densities, FLOPs and mask dynamics exactly, and a SHA-256 of every mask and of every tensor of the final model.

    python scripts/recorded_runs.py record tests/recorded/runs.json      # on the commit before a change
    python scripts/recorded_runs.py check tests/recorded/runs.json       # after it: exit 1 on any difference
    python scripts/recorded_runs.py check tests/recorded/runs.json --only rigl,lottery

``--checkout DIR`` trains with another checkout's ``main.py`` (a ``git worktree`` of the earlier commit).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
COMMON = ["scale=smoke", "logger.mode=disabled", "threads=1"]
# name -> (processes, overrides, run folder below output_root). Order matters: lottery reads pruning's run.
RUNS: dict[str, tuple[int, list[str], str]] = {
    "dense": (1, ["masking=dense"], "digits-small_cnn-dense/masking=dense,seed=0"),
    "static_erk": (1, ["masking=static", "masking.distribution=erk"],
                   "digits-small_cnn-static/masking=static,masking.distribution=erk,seed=0"),
    "set": (1, ["masking=set"], "digits-small_cnn-set/masking=set,seed=0"),
    "rigl": (1, ["masking=rigl"], "digits-small_cnn-rigl/seed=0"),
    "rigl_sm": (1, ["masking=rigl_sm"], "digits-small_cnn-rigl/masking=rigl_sm,seed=0"),
    "snfs": (1, ["masking=snfs"], "digits-small_cnn-snfs/masking=snfs,seed=0"),
    "small_dense": (1, ["masking=small_dense"], "digits-small_cnn-small_dense/masking=small_dense,seed=0"),
    "pruning": (1, ["variant=pruning", "masking.density=0.1", "seed=0"],
                "digits-small_cnn-pruning/seed=0,variant=pruning"),
    "lottery": (1, ["variant=lottery", "masking.density=0.1", "seed=0"],
                "digits-small_cnn-lottery/seed=0,variant=lottery"),
    "rigl_2_processes": (2, ["masking=rigl", "masking.delta_t=5", "run_tag=-ddp"],
                         "digits-small_cnn-rigl-ddp/masking.delta_t=5,run_tag=-ddp,seed=0"),
}  # fmt: skip
# Summary entries that are facts of the run (not of the machine or the clock).
COMPARED = ("method", "val_acc", "test_acc", "density", "budgeted_layers", "density_all_layers", "layer_densities",
            "initial_density", "exploration", "layer_exploration", "flops", "width_multiplier", "parameters",
            "epochs", "steps", "steps_per_epoch", "processes")  # fmt: skip
TIMING = ("images_per_s",)  # history entries that measure speed
# The CPU kernels every x86 machine has: PyTorch, oneDNN and MKL otherwise pick the widest vector instructions
# the CPU offers (AVX-512 or AVX2), whose float sums differ in their last bits, and a recording made on one
# machine would not be repeated on another (one made elsewhere differed in its last bits on an AVX2 CPU).
SAME_KERNELS = {"ATEN_CPU_CAPABILITY": "avx2", "DNNL_MAX_CPU_ISA": "AVX2", "MKL_CBWR": "AVX2"}


def train(checkout: Path, processes: int, overrides: list[str], output_root: Path) -> None:
    launcher = [sys.executable]
    if processes > 1:
        launcher += ["-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={processes}"]
    command = [*launcher, str(checkout / "main.py"), *COMMON, *overrides, f"output_root={output_root}"]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(checkout), **SAME_KERNELS}
    result = subprocess.run(command, cwd=output_root, env=env, capture_output=True, text=True, timeout=900)
    if result.returncode != 0:
        raise SystemExit(f"error: {' '.join(overrides)} failed ({result.returncode}): {result.stderr[-2000:]}")


def tensor_digest(tensor: Any) -> str:
    import torch

    data = tensor.detach().cpu().contiguous()
    if data.dtype == torch.bool:
        data = data.to(torch.uint8)
    return hashlib.sha256(data.reshape(-1).view(torch.uint8).numpy().tobytes()).hexdigest()[:16]


def describe(run_dir: Path) -> dict[str, Any]:
    """What a finished run produced, without the clock: summary figures, history, and tensor digests."""
    import torch

    summary = json.loads((run_dir / "summary.json").read_text())
    state = torch.load(run_dir / "checkpoint.pt", map_location="cpu", weights_only=True)["model"]
    history = [{key: value for key, value in entry.items() if key not in TIMING} for entry in summary["history"]]
    return {
        "summary": {key: summary.get(key) for key in COMPARED},
        "history": history,
        "masks": {key: tensor_digest(value) for key, value in state.items() if key.endswith("_mask")},
        "model": tensor_digest(torch.cat([value.detach().reshape(-1).float() for value in state.values()])),
        "config": summary["config"],
    }


def produce(checkout: Path, names: list[str]) -> dict[str, Any]:
    produced = {}
    with tempfile.TemporaryDirectory() as scratch:
        root = Path(scratch)
        for name in RUNS:  # in order, so that a lottery ticket finds its pruning run
            processes, overrides, folder = RUNS[name]
            needed = name in names or (name == "pruning" and "lottery" in names)
            if needed:
                train(checkout, processes, overrides, root)
                produced[name] = describe(root / folder)
    return {name: produced[name] for name in names}


def differences(recorded: Any, produced: Any, where: str = "") -> list[str]:
    """Where two records differ, as ``path: recorded != produced`` lines (exact comparison)."""
    if isinstance(recorded, dict) and isinstance(produced, dict):
        lines = []
        for key in sorted(recorded.keys() | produced.keys()):
            if key not in produced or key not in recorded:
                lines.append(f"{where}.{key}: only in the {'recording' if key in recorded else 'new run'}")
            else:
                lines.extend(differences(recorded[key], produced[key], f"{where}.{key}"))
        return lines
    if isinstance(recorded, list) and isinstance(produced, list) and len(recorded) == len(produced):
        return [line for i, (a, b) in enumerate(zip(recorded, produced)) for line in differences(a, b, f"{where}[{i}]")]
    return [] if recorded == produced else [f"{where}: {recorded!r} != {produced!r}"]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("mode", choices=("record", "check"))
    parser.add_argument("file", type=Path)
    parser.add_argument("--checkout", type=Path, default=ROOT, help="the checkout whose main.py trains")
    parser.add_argument("--only", default="", help="comma-separated run names (default: all): " + ", ".join(RUNS))
    args = parser.parse_args()
    names = [name for name in args.only.split(",") if name] or list(RUNS)
    unknown = sorted(set(names) - set(RUNS))
    if unknown:
        parser.error(f"unknown run {unknown[0]!r}; choose from {', '.join(RUNS)}")
    produced = produce(args.checkout.resolve(), names)
    if args.mode == "record":
        args.file.parent.mkdir(parents=True, exist_ok=True)
        partial = args.file.with_name(f".{args.file.name}.partial")  # then renamed: the old file or the new one
        partial.write_text(json.dumps(produced, indent=1, sort_keys=True) + "\n")
        os.replace(partial, args.file)
        print(f"recorded {len(produced)} runs in {args.file}")
        return 0
    recorded = json.loads(args.file.read_text())
    failed = 0
    for name in names:
        if name not in recorded:
            print(f"{name}: not in the recording")
            failed += 1
            continue
        found = differences({k: v for k, v in recorded[name].items() if k != "config"},
                            {k: v for k, v in produced[name].items() if k != "config"})  # fmt: skip
        print(f"{name}: {'identical' if not found else f'{len(found)} differences'}")
        for line in found[:10]:
            print(f"  {line}")
        failed += bool(found)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
