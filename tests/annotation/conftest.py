"""A real local Argilla server for the review tests (session-wide, stopped by PID at the end)."""

import pytest
import redis

from annotation import server


def own_redis_url(db: int = 11) -> str | None:
    """A database of our own on the machine's Redis when there is one; else serve starts its own Redis."""
    try:
        redis.Redis(host="127.0.0.1", port=6379, socket_connect_timeout=1).ping()
    except (redis.RedisError, OSError):
        return None
    return f"redis://127.0.0.1:6379/{db}"


@pytest.fixture(scope="session", name="own_redis_url")
def own_redis_url_fixture():
    return own_redis_url


@pytest.fixture(scope="session")
def argilla(tmp_path_factory):
    """A local server on a free port with its own data dir, stopped by PID at the end."""
    data_dir = tmp_path_factory.mktemp("argilla")
    served = server.serve(data_dir, port=server.free_port(), redis_url=own_redis_url())
    yield served, data_dir
    assert server.stop(data_dir)
