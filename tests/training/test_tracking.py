import pytest

from rigl_repro.errors import ConfigError
from rigl_repro.training.tracking import Tracker, validate_logger


def test_a_w_and_b_that_cannot_start_is_one_line_naming_the_ways_out(tmp_path, monkeypatch):
    import wandb

    def no_network(**kwargs):
        assert kwargs["settings"].init_timeout == 60  # a bounded wait, not W&B's own
        raise wandb.errors.CommError("Network error (ConnectionError), entering retry loop.\nmore lines")

    monkeypatch.setattr(wandb, "init", no_network)
    message = r"W&B could not start a online run \(Network error \(ConnectionError\), entering retry loop.\); .*offline"
    with pytest.raises(ConfigError, match=message):
        Tracker("online", "rigl-repro", None, {}, tmp_path)


@pytest.mark.parametrize("project", ["a/b", "what?", "", "x:y"])
def test_project_names_w_and_b_refuses_are_refused_first(project):
    with pytest.raises(ConfigError, match="logger.project="):
        validate_logger("offline", project)
    assert validate_logger("disabled", project) == "disabled"  # not used, not checked
