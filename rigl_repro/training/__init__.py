"""Training a run: the loop (``trainer``), the processes that share it (``processes``, ``distributed``), its
state and checkpoints, its folder (``session``, ``run_folder``) and its stop signals (``preemption``).

Import from the modules themselves (``rigl_repro.training.session.run``, ``rigl_repro.training.trainer.Trainer``):
this package imports nothing, so that the run layer (``rigl_repro.run``) can use its small modules."""
