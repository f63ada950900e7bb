"""A run's identity and how two runs' identities differ (rigl_repro/run/identity.py)."""

from rigl_repro.run.identity import describe_changes, identity_changes, run_identity
from rigl_repro.sparsity.methods import canonical_masking

CONFIG = {
    "dataset": {"name": "cifar10"},
    "model": {"name": "wrn22_2", "width": 1.0},
    "masking": {"name": "rigl", "density": 0.1},
    "train": {"lr": 0.1, "epochs": 250, "amp": "auto", "channels_last": "auto", "compile": "auto",
              "eval_batch_size": 1000},
    "seed": 0,
    "device": "auto",
    "deterministic": False,
    "logger": {"mode": "offline"},
}  # fmt: skip


def test_the_identity_keeps_what_determines_results_and_drops_speed_options():
    identity = run_identity(CONFIG)
    assert identity == {
        "dataset": {"name": "cifar10"},
        "model": {"name": "wrn22_2", "width": 1.0},
        "masking": {"name": "rigl", "density": 0.1},
        "train": {"lr": 0.1, "epochs": 250},
        "seed": 0,
    }
    faster = {**CONFIG, "device": "cuda", "deterministic": True, "train": {**CONFIG["train"], "compile": "off"}}
    assert run_identity(faster) == identity
    other = {**CONFIG, "train": {**CONFIG["train"], "lr": 0.05}}
    assert run_identity(other) != identity
    older = {**CONFIG, "train": {k: v for k, v in CONFIG["train"].items() if k != "compile"}}
    assert run_identity(older) == identity  # a run recorded before an execution option existed
    moved = {**CONFIG, "dataset": {**CONFIG["dataset"], "root": "/elsewhere", "system_root": None, "download": False}}
    assert run_identity(moved) == identity  # where the data are found is not what they are


def test_the_masking_node_counts_by_the_options_its_method_takes_in_either_layout():
    old_dense = {"name": "dense", "density": 1.0, "distribution": "uniform", "alpha": 0.3, "delta_t": 100}
    assert run_identity({**CONFIG, "masking": old_dense}) == run_identity({**CONFIG, "masking": {"name": "dense",
                                                                                              "density": 1.0}})
    older = {"name": "rigl", "density": 0.1, "alpha": 0.3}  # before delta_t existed: trained without it
    assert run_identity({**CONFIG, "masking": older}) != run_identity({**CONFIG, "masking": {**older, "delta_t": 100}})
    assert canonical_masking({"name": "rigl", "density": 0.1, "width_rule": "sqrt"}) == {"name": "rigl", "density": 0.1}


def test_an_identity_is_its_own_identity():
    """Checkpoints store identities: comparing one with a config must not lose what it holds."""
    per_process = {**CONFIG, "distributed": {"sync_batchnorm": False}}
    identity = run_identity(per_process)
    assert identity["batchnorm"] == "per_process" and run_identity(identity) == identity
    assert identity_changes(identity, per_process) == []
    (change,) = identity_changes(identity, CONFIG)
    assert change[:2] == ("batchnorm", "per_process") and repr(change[2]) == "(absent)"


def test_changes_are_listed_by_option_and_told_in_a_few_words():
    other = {**CONFIG, "seed": 1, "masking": {"name": "rigl", "density": 0.2}}
    changes = identity_changes(CONFIG, other)
    assert changes == [("masking.density", 0.1, 0.2), ("seed", 0, 1)]
    assert describe_changes(changes) == "masking.density: 0.1 -> 0.2, seed: 0 -> 1"
    assert describe_changes(changes * 3, limit=2).endswith("and 4 more")
