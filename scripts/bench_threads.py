"""How a CPU run's speed depends on its thread count, OpenMP's wait policy and other busy processes (issue 25).

Trains the same one-epoch Fashion-MNIST RigL run (the demo's data and model) alone and beside ``--busy``
processes that each keep one core busy, with ``threads=auto`` and ``threads=1``, and with OpenMP's threads
waiting passively (``main.py``'s default) or spinning (``OMP_WAIT_POLICY=ACTIVE``, libgomp's own default), and
prints the seconds of training each took (``summary.json``'s ``wall_time_s``) and the process's wall time.

    python scripts/bench_threads.py                      # the table
    python scripts/bench_threads.py --busy 1 --json FILE # also the records, for docs/benchmarks.md

Run it on an otherwise idle machine: the busy processes it starts are the only load it means to measure.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
BUSY = "import torch\ntorch.set_num_threads(1)\na = torch.randn(256, 256)\nwhile True:\n    a @ a\n"
RUN = ["dataset=fashion_mnist", "masking=rigl", "train.epochs=1", "logger.mode=disabled"]


def busy_processes(count: int) -> list[subprocess.Popen]:
    """``count`` processes that each keep one core busy until killed."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return [subprocess.Popen([sys.executable, "-c", BUSY], env=env) for _ in range(count)]


def wait_environment(wait: str) -> dict[str, str]:
    """How OpenMP's idle threads wait, as its environment says it: ``auto`` (nothing set: ``main.py`` chooses
    by the load it finds, ``rigl_repro.run.openmp``), ``passive`` (sleep at once), ``active``
    (spin; libgomp's ``OMP_WAIT_POLICY=ACTIVE``: for minutes), ``spin=N`` (spin N rounds, then sleep;
    libgomp's own default, with neither variable set, is 300000: about 3 ms)."""
    if wait == "auto":
        return {}
    if wait in ("passive", "active"):
        return {"OMP_WAIT_POLICY": wait.upper()}
    if wait.startswith("spin=") and wait[5:].isdigit():
        return {"GOMP_SPINCOUNT": wait[5:]}
    raise SystemExit(f"error: --waits: {wait!r} is not auto, passive, active or spin=N")


def timed_run(threads: str, wait: str, output_root: Path) -> dict[str, Any]:
    """One run of ``RUN`` with ``threads`` and OpenMP's ``wait``: its training and process seconds."""
    chosen = ("OMP_NUM_THREADS", "OMP_WAIT_POLICY", "GOMP_SPINCOUNT")
    env = {key: value for key, value in os.environ.items() if key not in chosen}
    env.update(wait_environment(wait))
    command = [sys.executable, str(ROOT / "main.py"), *RUN, f"threads={threads}", f"output_root={output_root}"]
    start = time.perf_counter()
    result = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if result.returncode != 0:
        raise SystemExit(f"error: the run failed ({' '.join(command)}): {result.stderr.strip().splitlines()[-1:]}")
    (summary_path,) = output_root.rglob("summary.json")
    summary = json.loads(summary_path.read_text())
    return {"threads": summary["cpu_threads"], "setting": threads, "wait": wait,
            "train_s": summary["wall_time_s"], "process_s": seconds, "test_acc": summary["test_acc"]}  # fmt: skip


def measure(busy: int, threads_settings: list[str], waits: list[str]) -> list[dict[str, Any]]:
    """Every case, alone and beside ``busy`` busy processes."""
    records = []
    for load in sorted({0, busy}):
        others = busy_processes(load)
        try:
            time.sleep(1.0 if others else 0.0)  # let them start before the run does
            for threads in threads_settings:
                for wait in waits:
                    with tempfile.TemporaryDirectory() as folder:
                        record = timed_run(threads, wait, Path(folder))
                    records.append({"busy_processes": load, **record})
                    print(f"busy {load}  threads={threads} ({record['threads']})  {wait:12}  train "
                          f"{record['train_s']:6.1f} s  process {record['process_s']:6.1f} s  test acc "
                          f"{100 * record['test_acc']:.2f}%", flush=True)  # fmt: skip
        finally:
            for process in others:
                process.kill()
                process.wait()
    return records


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--busy", type=int, default=1, help="busy processes beside the run (default 1)")
    parser.add_argument("--threads", default="auto,1", help="threads settings, comma-separated (default auto,1)")
    parser.add_argument("--waits", default="auto,passive,active",
                        help="idle OpenMP threads: auto, passive, active or spin=N (default auto,passive,active)")
    parser.add_argument("--json", type=Path, help="also write the records to this file")
    args = parser.parse_args()
    if args.busy < 0:
        parser.error("--busy must be >= 0")
    records = measure(args.busy, args.threads.split(","), args.waits.split(","))
    if args.json:
        args.json.write_text(json.dumps({"cores": os.cpu_count(), "records": records}, indent=1) + "\n")


if __name__ == "__main__":
    main()
