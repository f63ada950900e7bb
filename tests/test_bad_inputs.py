"""Every bad input a new user might type, as ``main.py`` sees it: refused before training starts, in one line
that names the option, with a non-zero exit code and no traceback.

``main.py`` checks its command line before Hydra starts (``check_command_line``) and prints that check's problem
as ``error: <it>`` with exit code 2 (``tests/test_paths.py`` runs it so); a case that check refuses is tested
there, in-process, and one it lets through is run as ``main.py`` itself: refused once the run starts."""

import subprocess
import sys
from pathlib import Path

import pytest

from rigl_repro.config import check_command_line

ROOT = Path(__file__).resolve().parents[1]

CASES = [  # (overrides, what the one line must contain)
    (["seed=99999999999999999999"], "seed=99999999999999999999 is invalid"),
    (["seed=-1"], "seed=-1 is invalid"),
    (["device=meta"], "device='meta' is not a device"),
    (["distributed.backend=mpi"], "distributed.backend='mpi' is not known"),
    (["distributed.sync_batchnorm=maybe"], "distributed.sync_batchnorm='maybe' is invalid"),
    (["distributed.timeout_s=0"], "distributed.timeout_s=0 is invalid"),
    (["model=wrn22_2"], "does not take the dataset's 1x8x8 images"),
    (["dataset.num_classes=5"], "dataset.num_classes=5 but digits's labels go up to 9"),
    (["dataset.mean=[0.1,0.2]"], "dataset.mean=[0.1, 0.2] is invalid"),
    (["dataset.image_size=0"], "dataset.image_size=0 is invalid"),
    (["dataset.test_size=0"], "dataset.test_size=0 is invalid"),
    (["dataset.val_split=middle"], "dataset.val_split='middle' is not known"),
    (["dataset.augment=flip"], "dataset.augment='flip' is not known"),
    (["dataset=fashion_mnist", "dataset.download=maybe"], "dataset.download='maybe' is invalid"),
    (["dataset=fashion_mnist", "dataset.system_root=5"], "dataset.system_root=5 is invalid"),
    (["dataset=fashion_mnist", "dataset.raw_md5=abc"], "dataset.raw_md5='abc' is invalid"),
    (["output_root=/dev/null/runs"], "output_root=/dev/null/runs cannot be written"),
    (["logger.mode=offline", "logger.project=a/b"], "logger.project='a/b' is invalid"),
    (["logger.mode=sometimes"], "logger.mode='sometimes' is not known"),
    (["train.batch_size=100000"], "train.batch_size=100000 is larger than the 1247 training images"),
    (["train.epochs=1e9"], "train.epochs=1000000000.0 is invalid"),
    (["checkpoint.resume=maybe"], "checkpoint.resume='maybe' is invalid"),
    (["checkpoint.on_signals=[SIGFOO]"], "checkpoint.on_signals contains 'SIGFOO', which is not a signal here"),
    (["checkpoint.on_signals=[SIGKILL]"], "checkpoint.on_signals contains 'SIGKILL', which cannot be caught"),
    (["deterministic=perhaps"], "deterministic='perhaps' is invalid"),
    (["threads=0"], "threads=0 is invalid; expected auto or a number of threads >= 1"),
    (["trial_seeds=[0,1]", "dataset.val_size=0"], "trial_seeds averages validation accuracies"),
    (["masking.density=1.5"], "masking.density=1.5 is out of range"),
    (["masking.alpha=abc"], "masking.alpha='abc' is not a number"),
    (["masking.delta_t=0"], "masking.delta_t=0"),
    (["masking.distribution=weird"], "masking.distribution='weird' is not known"),
    (["masking.distribution=custom", "masking.custom_densities=/no/such/summary.json"], "masking.custom_densities="),
    (["masking=foo"], "Could not find 'masking/foo'; choose one of: dense,"),
    (["masking=dense", "masking.alpha=0.5"], "Could not override 'masking.alpha'"),  # an option dense does not take
    (["masking=dense", "masking.alpha=0.5"], "It is not an option of this config: check its spelling, or the "
                                             "options of the group you chose"),  # not Hydra's '+masking.alpha' hint
    (["masking=static", "masking.redistribution=grad"], "Could not override 'masking.redistribution'"),
    (["masking=dense", "+masking.alpha=0.5"], "masking.alpha is not an option of method 'dense'; its options are: "),
    (["dataset=nope"], "Could not find 'dataset/nope'; choose one of: cifar10,"),
    (["foo=1"], "Could not override 'foo'"),
    (["train.lr=[1"], "no viable alternative at input '[1'"),
    (["run_tag=é"], "the override run_tag=é could not be parsed"),
    (["output_root="], "output_root='' is empty"),
    (["dataset.image_size=9"], "dataset.image_size=9 but digits's images are 8x8"),
    (["dataset.std=[0]"], "dataset.std=[0] is invalid"),
    (["train.length_multiplier=1e-9"], "train.length_multiplier=1e-09 scales train.epochs"),
    (["masking=small_dense", "masking.density=1e-9"], "masking.density=1e-09 leaves"),
    (["logger.mode=offline", "logger.entity=a/b"], "logger.entity='a/b' is invalid"),
    (["trial_seeds=[0,0]"], "trial_seeds=[0, 0] repeats seed 0"),
    (["trial_seeds=[]"], "trial_seeds=[] lists no seed"),
    (["trial_seeds=[a,b]"], "trial_seeds[0]='a' is invalid"),
]


@pytest.mark.parametrize("overrides, message", CASES, ids=[" ".join(case[0]) for case in CASES])
def test_a_bad_input_is_refused_in_one_line_before_training(tmp_path, overrides, message):
    arguments = ["dataset=digits", "logger.mode=disabled", "train.epochs=1", f"output_root={tmp_path / 'runs'}",
                 *overrides]  # fmt: skip
    problem = check_command_line(arguments)
    if problem is not None:  # refused before Hydra starts: main.py prints it as one line, exit code 2
        assert "\n" not in problem and message in problem, problem
        assert not list(tmp_path.iterdir())  # nothing created
        return
    command = [sys.executable, str(ROOT / "main.py"), *arguments]
    result = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=120)
    output = (result.stdout + result.stderr).strip().splitlines()
    assert result.returncode == 2, output
    assert len(output) == 1 and "error: " in output[0] and message in output[0], output
    assert not list(tmp_path.rglob("checkpoint.pt")) and not list(tmp_path.rglob("summary.json"))
