"""Export a finished run's trained model as one compact safetensors file (masks as packed bits, only the
active weights; docs/export.md) and print how much smaller it is than the dense weights and the checkpoint.

    python scripts/export.py outputs/demo/fashion_mnist-lenet5-rigl/masking=rigl           # RUN_DIR/model.safetensors
    python scripts/export.py RUN_DIR --out /tmp/rigl.safetensors --check

``--check`` loads the file back and evaluates it on the run's test split as the trainer does; it fails
(exit 1) unless the accuracy equals summary.json's test_acc exactly. Other errors (not a run folder, an
unfinished run, a corrupt checkpoint or one with non-finite weights, an unwritable output or a full disk, which
leave any previous export as it was) are one line and exit 2. The same run always exports to the same bytes.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from anywhere without installing

from rigl_repro.errors import ConfigError  # noqa: E402
from rigl_repro.export import accuracy_on_test_split, evaluation_device, export_run, load_export  # noqa: E402
from rigl_repro.results import read_summary  # noqa: E402


def size(nbytes: int) -> str:
    """Bytes in KiB or MiB, with the exact count."""
    scaled = f"{nbytes / 2**20:.2f} MiB" if nbytes >= 2**20 else f"{nbytes / 2**10:.1f} KiB"
    return f"{scaled} ({nbytes:,} bytes)"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run_dir", type=Path, metavar="RUN_DIR", help="a finished run's folder (with summary.json)")
    parser.add_argument("--out", type=Path, default=None, help="the file to write (default: RUN_DIR/model.safetensors)")
    parser.add_argument("--check", action="store_true",
                        help="reload the export and require the run's test accuracy exactly")  # fmt: skip
    args = parser.parse_args(argv)
    try:
        report = export_run(args.run_dir, args.out)
        print(f"wrote {report.path}")
        if report.density is not None:
            print(f"density of the masked weights: {report.density:.4f}")
        print(f"dense model (fp32 weights and buffers): {size(report.dense_bytes)}")
        print(f"checkpoint.pt (with optimizer state):   {size(report.checkpoint_bytes)}")
        print(f"export:                                 {size(report.export_bytes)}")
        print(f"ratio: dense / export {report.ratio:.2f}x, checkpoint.pt / export {report.checkpoint_ratio:.2f}x")
        if not args.check:
            return
        model, metadata = load_export(report.path)
        device = evaluation_device(metadata)
        accuracy = accuracy_on_test_split(model, metadata, device)
        expected = read_summary(args.run_dir)["test_acc"]
    except ConfigError as error:
        print(f"error: {error}", file=sys.stderr)
        sys.exit(2)
    if accuracy != expected:
        note = "" if device.type == metadata["trained_on"] else f" (trained on {metadata['trained_on']})"
        print(f"check failed: the export's test accuracy on {device.type}{note} is {accuracy!r}, summary.json says "
              f"{expected!r}", file=sys.stderr)  # fmt: skip
        sys.exit(1)
    print(f"check: reloaded, test accuracy {accuracy:.4f} on {device.type} equals summary.json's exactly")


if __name__ == "__main__":
    main()
