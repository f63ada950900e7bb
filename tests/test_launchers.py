"""What the launchers tell a process (rigl_repro/launchers.py)."""

from rigl_repro.launchers import Launch, launch_from_environment, slurm_master


def test_the_launcher_s_environment_says_where_a_process_stands():
    assert launch_from_environment({}) == Launch()
    torchrun = {"RANK": "1", "WORLD_SIZE": "4", "LOCAL_RANK": "1", "MASTER_ADDR": "n1", "MASTER_PORT": "1234"}
    assert launch_from_environment(torchrun) == Launch(1, 4, 1, "n1", 1234)
    slurm = {"SLURM_PROCID": "3", "SLURM_STEP_NUM_TASKS": "4", "SLURM_LOCALID": "1", "SLURM_JOB_ID": "123",
             "SLURM_STEP_NODELIST": "gpu[07-08]"}  # fmt: skip
    assert launch_from_environment(slurm) == Launch(3, 4, 1, slurm_master("gpu[07-08]"), 20123)
    assert slurm_master("gpu[07-08]") == "gpu07" and slurm_master("a,b") == "a"
    batch_script = {"SLURM_PROCID": "0", "SLURM_NTASKS": "4", "SLURM_JOB_ID": "5"}  # no srun step: one process
    assert launch_from_environment(batch_script) == Launch()
