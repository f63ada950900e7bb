"""OpenMP's idle threads spin when the cores are free and sleep beside busy processes (issue 25)."""

import pytest

from rigl_repro.run import openmp
from rigl_repro.run.openmp import choose_wait_policy, wait_policy


@pytest.mark.parametrize("busy, policy", [(0.0, None), (0.3, None), (0.5, "PASSIVE"), (1.7, "PASSIVE"),
                                          (None, "PASSIVE")])  # fmt: skip
def test_idle_threads_sleep_only_when_other_processes_use_the_cores(busy, policy):
    assert wait_policy({}, busy) == policy


@pytest.mark.parametrize("explicit", [{"OMP_WAIT_POLICY": "ACTIVE"}, {"GOMP_SPINCOUNT": "1000"}])
def test_a_policy_in_the_environment_is_kept(monkeypatch, explicit):
    monkeypatch.setattr(openmp, "busy_cores", lambda: pytest.fail("the load is not read when the user chose"))
    environ = dict(explicit)
    assert choose_wait_policy(environ) is None and environ == explicit


def test_the_choice_is_written_where_openmp_reads_it(monkeypatch):
    environ: dict[str, str] = {}
    monkeypatch.setattr(openmp, "busy_cores", lambda: 1.0)
    assert choose_wait_policy(environ) == "PASSIVE" and environ == {"OMP_WAIT_POLICY": "PASSIVE"}
    environ = {}
    monkeypatch.setattr(openmp, "busy_cores", lambda: 0.0)
    assert choose_wait_policy(environ) is None and environ == {}


def test_the_load_is_read_from_the_kernel_s_counters(monkeypatch):
    ticks = iter([(100, 1000), (150, 1100)])  # 50 of 100 ticks busy, over all cores
    monkeypatch.setattr(openmp, "cpu_ticks", lambda: next(ticks))
    monkeypatch.setattr(openmp.os, "cpu_count", lambda: 4)
    assert openmp.busy_cores(interval_s=0) == 2.0
    monkeypatch.setattr(openmp, "cpu_ticks", lambda: None)
    assert openmp.busy_cores(interval_s=0) is None
