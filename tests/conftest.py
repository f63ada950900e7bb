import os

import pytest

from tests.helpers import LocalServer


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
