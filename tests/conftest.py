import os

import pytest

from tests.helpers import LocalServer

# The runs the tests start (in process and as main.py subprocesses) write no W&B files unless a test asks for them:
# an offline W&B run costs each run about a second of imports and writes. The tests of the W&B logger choose
# their mode themselves (tests/loggers/test_wandb.py), and those that check offline runs drop this variable.
os.environ.setdefault("WANDB_MODE", "disabled")


def pytest_collection_modifyitems(config, items):
    """Tests marked ``cuda`` are skipped where CUDA is not available, unless ``RIGL_CUDA_TESTS_DEVICE=cpu`` asks
    for them on the CPU (the GPU check's rehearsal, ``scripts/gpu_check.py --cpu``)."""
    cuda_tests = [item for item in items if item.get_closest_marker("cuda")]
    if not cuda_tests or os.environ.get("RIGL_CUDA_TESTS_DEVICE") == "cpu":
        return
    import torch

    if not torch.cuda.is_available():
        for item in cuda_tests:
            item.add_marker(pytest.mark.skip(reason="needs a CUDA device (RIGL_CUDA_TESTS_DEVICE=cpu: on the CPU)"))


@pytest.fixture
def local_server(tmp_path):
    """An HTTP server on localhost serving ``tmp_path / "mirror"``."""
    server = LocalServer(tmp_path / "mirror")
    yield server
    server.close()
