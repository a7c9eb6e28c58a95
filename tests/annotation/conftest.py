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


POSTGRES = "postgresql://workbench_test:workbench_test@127.0.0.1:5432"  # the role .ci/run makes (CREATEDB)


@pytest.fixture
def postgres_database():
    """A fresh PostgreSQL database on the machine's server (the role .ci/run creates), dropped afterwards; the test
    is skipped, saying why, where the machine has no PostgreSQL."""
    import secrets
    import shutil
    import subprocess

    if shutil.which("psql") is None:
        pytest.skip("no psql on PATH (PostgreSQL: .ci/run starts it)")
    env = {"PGPASSWORD": "workbench_test", "PATH": "/usr/bin:/bin"}
    name = f"argilla_test_{secrets.token_hex(4)}"

    def psql(command: str) -> subprocess.CompletedProcess:
        return subprocess.run(["psql", "-h", "127.0.0.1", "-U", "workbench_test", "-d", "postgres", "-qc", command],
                              env=env, capture_output=True, text=True)

    created = psql(f"CREATE DATABASE {name}")
    if created.returncode != 0:
        pytest.skip(f"PostgreSQL at 127.0.0.1:5432 refused the test role: {created.stderr.strip()[:200]}")
    yield f"{POSTGRES}/{name}"
    psql(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
