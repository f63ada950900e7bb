"""Run the Fashion-MNIST examples (examples/mlp_fashion_mnist.py, examples/vit_fashion_mnist.py) for dense,
static, SET and RigL at density 0.1 (ERK) over seeds 0 1 2, one process at a time on one thread, and write the
records (``--out-json``) and docs/examples.md (``--out-md``: the examples, the table of mean ± std over seeds,
whether RigL >= SET >= static holds, the command and the machine).

    OMP_NUM_THREADS=1 python scripts/examples_table.py                 # the 24 runs (about 25 minutes)
    python scripts/examples_table.py --models mlp --seeds 0 --epochs 1  # a quick look

Each run's record lands in ``<out-json's folder>/runs/``; a re-run reuses every record whose settings match
(model, method, density, seed, epochs, subsets) instead of training again, so an interrupted table resumes.
"""

from __future__ import annotations

import argparse
import datetime
import json
import math
import os
import platform
import shlex
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import torch

from examples import mlp_fashion_mnist, vit_fashion_mnist
from examples.common import METHODS, RECORD_KEYS
from rigl_repro.results import atomic_file
from rigl_repro.sparsity import SparseEngine, build_method

MODELS = {"mlp": mlp_fashion_mnist, "vit": vit_fashion_mnist}
LABELS = {"dense": "Dense", "static": "Static", "set": "SET", "rigl": "RigL"}
DENSITY = 0.1


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", choices=tuple(MODELS), default=list(MODELS))
    parser.add_argument("--methods", nargs="+", choices=METHODS, default=list(METHODS))
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--epochs", type=int, default=None, help="passed to every run (default: each script's)")
    parser.add_argument("--train-subset", type=int, default=None, help="passed to every run")
    parser.add_argument("--test-subset", type=int, default=None, help="passed to every run")
    parser.add_argument("--data-root", default=None, help="passed to every run")
    parser.add_argument("--threads", type=int, default=1, help="OMP_NUM_THREADS of every run")
    parser.add_argument("--out-json", type=Path, default=ROOT / "outputs" / "examples" / "results.json")
    parser.add_argument("--note", default="", help="a sentence added to the markdown (e.g. about the machine)")
    parser.add_argument("--out-md", type=Path, default=ROOT / "docs" / "examples.md")
    return parser.parse_args(argv)


def expected(args: argparse.Namespace, model: str, method: str, seed: int) -> dict:
    """The settings a reusable record of this run must have."""
    return {
        "model": model,
        "method": method,
        "density": 1.0 if method == "dense" else DENSITY,
        "seed": seed,
        "epochs": args.epochs or MODELS[model].DEFAULTS["epochs"],
        "train_subset": args.train_subset,
        "test_subset": args.test_subset,
    }


def reusable(path: Path, settings: dict) -> dict | None:
    try:
        record = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    if not all(key in record for key in RECORD_KEYS) or any(record.get(k) != v for k, v in settings.items()):
        return None
    return record


def run_one(args: argparse.Namespace, model: str, method: str, seed: int, path: Path) -> dict:
    command = [sys.executable, str(Path(MODELS[model].__file__).relative_to(ROOT)), "--method", method,
               "--density", str(DENSITY), "--seed", str(seed), "--json", str(path)]  # fmt: skip
    for option, value in (("--epochs", args.epochs), ("--train-subset", args.train_subset),
                          ("--test-subset", args.test_subset), ("--data-root", args.data_root)):  # fmt: skip
        if value is not None:
            command += [option, str(value)]
    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads), "MKL_NUM_THREADS": str(args.threads)}
    done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"{shlex.join(command)} failed ({done.returncode}):\n{done.stderr.strip()[-2000:]}")
    return json.loads(path.read_text())


def model_facts(model: str) -> dict:
    """Weight counts of the example's model and the layer densities ERK gives it at density 0.1."""
    module = MODELS[model]
    net = module.build_model()
    engine = SparseEngine(net, torch.optim.SGD(net.parameters(), lr=0.1),
                          build_method({"name": "static", "density": DENSITY, "distribution": "erk"}), 1)  # fmt: skip
    layers = engine.layer_densities()
    return {
        "parameters": sum(p.numel() for p in net.parameters()),
        "masked": sum(layer.size for layer in engine.layers),
        "active": sum(engine.active_counts()),
        "dense_layers": [
            f"`{layer.name}` ({' x '.join(map(str, layer.weight.shape))})"
            for layer in engine.layers
            if layers[layer.name] >= 0.999
        ],
        "layers": len(layers),
    }


def mean_std(values: list[float]) -> tuple[float, float]:
    return statistics.fmean(values), (statistics.stdev(values) if len(values) > 1 else 0.0)


def summarise(records: list[dict], models: list[str], methods: list[str]) -> dict:
    table = {}
    for model in models:
        for method in methods:
            runs = [r for r in records if r["model"] == model and r["method"] == method]
            if runs:
                acc = mean_std([100 * r["test_acc"] for r in runs])
                table[model, method] = {
                    "acc": acc,
                    "n": len(runs),
                    "density": statistics.fmean(r["budgeted_density"] for r in runs),
                    "wall": statistics.fmean(r["wall_s"] for r in runs),
                    "seeds": sorted(r["seed"] for r in runs),
                }
    return table


def table_markdown(table: dict, models: list[str], methods: list[str]) -> str:
    lines = ["| model | method | test accuracy (%) | seeds | budgeted density | wall time per run (s) |",
             "| --- | --- | --- | --- | --- | --- |"]  # fmt: skip
    for model in models:
        for method in methods:
            row = table.get((model, method))
            if row is None:
                continue
            mean, std = row["acc"]
            lines.append(f"| {model} | {LABELS[method]} | {mean:.2f} ± {std:.2f} | {row['n']} | "
                         f"{row['density']:.4f} | {row['wall']:.1f} |")  # fmt: skip
    return "\n".join(lines)


def compare(table: dict, model: str, better: str, worse: str) -> tuple[bool, str]:
    """Whether ``better``'s mean >= ``worse``'s, and the gap against the seed noise (the standard error of the
    difference of the two means)."""
    (m1, s1), n1 = table[model, better]["acc"], table[model, better]["n"]
    (m2, s2), n2 = table[model, worse]["acc"], table[model, worse]["n"]
    gap = m1 - m2
    error = math.sqrt(s1**2 / n1 + s2**2 / n2)
    if n1 < 2 or n2 < 2:
        noise = "one seed each, no noise estimate"
    elif abs(gap) <= 2 * error:
        noise = f"within seed noise: 2 standard errors of the gap are {2 * error:.2f}"
    else:
        noise = f"beyond seed noise: 2 standard errors of the gap are {2 * error:.2f}"
    return gap >= 0, f"{LABELS[better]} - {LABELS[worse]} = {gap:+.2f} points ({noise})"


def verdicts(table: dict, models: list[str], methods: list[str]) -> list[str]:
    lines = []
    for model in models:
        if not all((model, m) in table for m in ("rigl", "set", "static")):
            lines.append(f"- **{model}**: not all of static, SET and RigL ran; no verdict.")
            continue
        first, text1 = compare(table, model, "rigl", "set")
        second, text2 = compare(table, model, "set", "static")
        holds = "**holds**"
        if not (first and second):
            parts = [f"RigL >= SET {'holds' if first else 'fails'}", f"SET >= static {'holds' if second else 'fails'}"]
            holds = f"**does not hold** ({'; '.join(parts)})"
        lines.append(f"- **{model}**: RigL >= SET >= static {holds} on the means: {text1}; {text2}.")
    return lines


def machine() -> str:
    name = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                name = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{name}, {os.cpu_count()} cores, Python {platform.python_version()}, torch {torch.__version__}"


def write_markdown(args: argparse.Namespace, records: list[dict], command: str, elapsed: float, reused: int,
                   dates: list[str]) -> None:  # fmt: skip
    table = summarise(records, args.models, args.methods)
    facts = {model: model_facts(model) for model in MODELS}  # the template describes both examples
    threads = sorted({r["threads"] for r in records})
    devices = sorted({r.get("device", "cpu") for r in records})
    total = sum(r["wall_s"] for r in records)
    subsets = ""
    if args.train_subset or args.test_subset:
        subsets = (f"\n**Not the default data:** training on the first {args.train_subset or 60000} images and "
                   f"testing on the first {args.test_subset or 10000}.\n")  # fmt: skip
    if args.epochs is not None:
        subsets += f"\n**Not the default length:** every run trained {args.epochs} epoch(s).\n"
    seeds_missing = [f"{m} {LABELS[k]}" for (m, k), row in table.items() if row["n"] < len(args.seeds)]
    missing = "" if not seeds_missing else f"\n**Missing seeds:** {', '.join(seeds_missing)}.\n"

    def describe(model: str) -> str:
        f = facts[model]
        return (f"{f['parameters']:,} parameters, {f['masked']:,} of them in the {f['layers']} masked Linear weights; "
                f"at density 0.1 ERK keeps {f['active']:,} of those and makes "
                f"{', '.join(f['dense_layers']) or 'no layer'} dense")  # fmt: skip

    def steps(model: str) -> int:
        return MODELS[model].DEFAULTS["epochs"] * math.ceil(60_000 / MODELS[model].DEFAULTS["batch_size"])

    def updates(model: str) -> int:  # batches t with (t + 1) % 100 == 0 and t < 0.75 x steps
        return sum(1 for t in range(steps(model)) if (t + 1) % 100 == 0 and t < 0.75 * steps(model))

    note = f"\n\n{args.note}" if args.note else ""
    mlp_d, vit_d = mlp_fashion_mnist.DEFAULTS, vit_fashion_mnist.DEFAULTS
    text = f"""# Examples: an MLP and a small ViT on Fashion-MNIST

Two scripts show the plain-PyTorch API (`SparseEngine`, README "Using the engine") on real data, each training
one model dense or at density 0.1 (ERK) with static, SET or RigL masks; their shared plumbing (data in memory,
the loops, options, the JSON record) is `examples/common.py`.

```bash
python examples/mlp_fashion_mnist.py --method rigl --seed 0     # --method dense|static|set|rigl, --density 0.1
python examples/vit_fashion_mnist.py --method set --json outputs/examples/vit_set.json
```

Each prints one line (test accuracy, budgeted density, wall time) and, with `--json`, writes the record
`{{model, method, density, seed, epochs, test_acc, budgeted_density, wall_s, threads, ...}}`. `--epochs`,
`--train-subset N` and `--test-subset N` make them small (the tests run them so); `--data-root` is where
torchvision's `FashionMNIST/raw` goes (default `data/`, or `$RIGL_DATA`), filled from Debian's
`/usr/share/datasets/fashion-mnist` when it is installed, else downloaded.

| example | model | optimiser | schedule |
| --- | --- | --- | --- |
| `examples/mlp_fashion_mnist.py` | MLP 784-300-100-10 (LeNet-300-100, ReLU): {describe("mlp")} | SGD, Nesterov momentum 0.9, lr {mlp_d["lr"]}, weight decay {mlp_d["weight_decay"]}, batch {mlp_d["batch_size"]} | {mlp_d["epochs"]} epochs, cosine decay per batch |
| `examples/vit_fashion_mnist.py` | ViT, 7x7 patches (16 tokens + class token), width 64, 2 pre-norm blocks of 4 heads, MLP ratio 2: {describe("vit")}; the class token, position embeddings, biases and LayerNorms stay dense | AdamW, lr {vit_d["lr"]}, weight decay {vit_d["weight_decay"]}, batch {vit_d["batch_size"]} | {vit_d["epochs"]} epochs, linear warm-up over 5% of the steps, then cosine decay per batch |

SET and RigL update the masks every 100 steps (`delta_t`), dropping a fraction alpha = 0.3 cosine-decayed to zero
at 75% of the steps (the engine's defaults): {updates("mlp")} updates in the MLP's {steps("mlp")} steps,
{updates("vit")} in the ViT's {steps("vit")} (469 batches an epoch). Static keeps its random ERK mask throughout. All runs train on
the 60,000 training images and test on the 10,000 test images (no validation split: these are examples; the
defaults were chosen once, from a dense run of each model, to fit about two minutes on one thread).

## Results
{subsets}{missing}
{table_markdown(table, args.models, args.methods)}

Mean ± sample standard deviation over seeds {", ".join(map(str, args.seeds))}; "budgeted density" is
`engine.budgeted_density()` (the masked weights' active fraction); wall time is training plus testing, without
the process start and data loading, on {", ".join(map(str, threads))} thread(s) ({", ".join(devices)}).

Whether RigL >= SET >= static holds (on the means; a gap counts as beyond seed noise when it exceeds twice the
standard error of the difference of the two means, sqrt(s1^2/n1 + s2^2/n2)):

{chr(10).join(verdicts(table, args.models, args.methods))}

These are short runs of small models ({updates("mlp")} and {updates("vit")} topology updates), with defaults
chosen for the dense models and left as they are for the sparse methods (`delta_t` 100, alpha 0.3, no tuning);
the RigL paper's ordering is measured on CIFAR-10 and ImageNet over far longer schedules. A verdict here says
what these examples measure, not what RigL does in general.

Produced by `{command}`, the runs on {" to ".join(sorted({dates[0], dates[-1]}))}; machine: {machine()}. The
{len(records)} runs took {total / 60:.1f} minutes of training and testing in all, one run at a time (each process
also spends about 5 s starting and loading the data); {reused} of them were reused from an earlier invocation
(the last invocation took {elapsed:.0f} s). The records are in `{_shown(args.out_json)}`.{note}
"""
    with atomic_file(args.out_md) as temporary:  # the old page or the whole new one, never half
        temporary.write_text(text)


def _shown(path: Path) -> str:
    try:
        return str(path.resolve().relative_to(ROOT))
    except ValueError:
        return str(path)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    shown = list(sys.argv[1:] if argv is None else argv)
    if "--note" in shown:  # the note documents the runs; it does not change them
        del shown[shown.index("--note") : shown.index("--note") + 2]
    threads = os.environ.get("OMP_NUM_THREADS")
    command = (
        ("" if threads is None else f"OMP_NUM_THREADS={threads} ")
        + "python "
        + shlex.join(["scripts/examples_table.py", *shown])
    )
    runs_dir = args.out_json.parent / "runs"
    jobs = [(model, method, seed) for model in args.models for method in args.methods for seed in args.seeds]
    records, failures, paths, reused = [], [], [], 0
    started = time.perf_counter()
    for index, (model, method, seed) in enumerate(jobs, 1):
        path = runs_dir / f"{model}_{method}_seed{seed}.json"
        settings = expected(args, model, method, seed)
        record = reusable(path, settings)
        prefix = f"[{index}/{len(jobs)}] {model} {method} seed {seed}:"
        if record is not None:
            print(f"{prefix} reused {_shown(path)} (test accuracy {record['test_acc']:.4f})", flush=True)
            reused += 1
        else:
            print(f"{prefix} training ...", end=" ", flush=True)
            try:
                record = run_one(args, model, method, seed, path)
            except RuntimeError as error:
                print("failed", flush=True)
                failures.append(str(error))
                continue
            print(f"test accuracy {record['test_acc']:.4f}, density {record['budgeted_density']:.4f}, "
                  f"{record['wall_s']:.1f} s", flush=True)  # fmt: skip
        records.append(record)
        paths.append(path)
    with atomic_file(args.out_json) as temporary:
        temporary.write_text(json.dumps({"command": command, "runs": records}, indent=1) + "\n")
    dates = sorted(datetime.date.fromtimestamp(path.stat().st_mtime).isoformat() for path in paths)
    write_markdown(args, records, command, time.perf_counter() - started, reused, dates or ["-"])
    print(f"wrote {_shown(args.out_json)} and {_shown(args.out_md)}")
    if failures:
        print("\n".join(failures), file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
