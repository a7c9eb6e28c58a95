"""A URL shown or written without its password."""

import pytest

from workbench.core.urls import masked


@pytest.mark.parametrize("url, shown", [
    ("redis://:s3cret@127.0.0.1:6379/0", "redis://:***@127.0.0.1:6379/0"),
    ("redis://user:pw@host/1", "redis://user:***@host/1"),
    ("rediss://:p%40ss@[::1]:6380/2", "rediss://:***@[::1]:6380/2"),
    ("redis://127.0.0.1:6379/0", "redis://127.0.0.1:6379/0"),
    ("https://sk-token@api.example.org/v1", "https://***@api.example.org/v1"),  # a lone user part is the secret
    ("not a url", "not a url"),
])
def test_masked(url, shown):
    assert masked(url) == shown


def test_credentials_in_an_api_base_are_never_shown_nor_kept():
    from workbench.core.urls import masked_data

    assert masked_data({"api_base": ["http://u:pw@a/v1", "http://b/v1"], "n": 2}) == {
        "api_base": ["http://u:***@a/v1", "http://b/v1"], "n": 2}
    from workbench.core.backends import EndpointDown, OpenAIModel
    from workbench.core.models import GenerationParams

    server = OpenAIModel("m", "http://reader:s3cret@127.0.0.1:9/v1", max_retries=0)  # the real openai client
    with pytest.raises(EndpointDown) as refused:
        server._one("Say hello.", GenerationParams(max_new_tokens=2))
    assert "s3cret" not in str(refused.value) and str(refused.value).startswith("http://reader:***@127.0.0.1:9/v1")
