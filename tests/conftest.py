import pytest

from tests.helpers import LocalServer


@pytest.fixture
def local_server(tmp_path):
    """An HTTP server on localhost serving ``tmp_path / "mirror"``."""
    server = LocalServer(tmp_path / "mirror")
    yield server
    server.close()
