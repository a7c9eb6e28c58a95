"""A URL shown or written without its password."""

import pytest

from workbench.core.urls import masked


@pytest.mark.parametrize("url, shown", [
    ("redis://:s3cret@127.0.0.1:6379/0", "redis://:***@127.0.0.1:6379/0"),
    ("redis://user:pw@host/1", "redis://user:***@host/1"),
    ("rediss://:p%40ss@[::1]:6380/2", "rediss://:***@[::1]:6380/2"),
    ("redis://127.0.0.1:6379/0", "redis://127.0.0.1:6379/0"),
    ("not a url", "not a url"),
])
def test_masked(url, shown):
    assert masked(url) == shown
