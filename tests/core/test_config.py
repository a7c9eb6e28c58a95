import pytest
from pydantic import BaseModel, ConfigDict, Field

from workbench.core.config import build_config, load_config
from workbench.core.errors import ConfigError
from workbench.core.fingerprint import config_hash


class DedupLike(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    threshold: float = Field(0.7, ge=0, le=1)
    ngram: int = 3
    batch_size: int = 1000


def test_unknown_key_says_did_you_mean_and_lists_valid_keys():
    with pytest.raises(ConfigError) as info:
        build_config(DedupLike, {"treshold": 0.5}, "recipe.yaml")
    assert str(info.value) == "recipe.yaml: treshold: unknown key (did you mean 'threshold'?)"
    assert info.value.hint == "valid keys: threshold, ngram, batch_size"


def test_bad_value_names_the_path():
    with pytest.raises(ConfigError, match=r"^cfg.yaml: threshold: Input should be less than or equal to 1"):
        build_config(DedupLike, {"threshold": 3}, "cfg.yaml")


def test_yaml_then_overrides(tmp_path):
    path = tmp_path / "cfg.yaml"
    path.write_text("threshold: 0.5\nngram: 5\n")
    config = load_config(DedupLike, path, {"ngram": 4, "threshold": None})
    assert (config.threshold, config.ngram) == (0.5, 4)  # None means the flag was not given


def test_invalid_yaml_names_the_line(tmp_path):
    path = tmp_path / "cfg.yaml"
    path.write_text("threshold: 0.5\nngram: [3\n")
    with pytest.raises(ConfigError, match=r"cfg.yaml:\d+: invalid YAML"):
        load_config(DedupLike, path)


def test_hash_ignores_fields_that_do_not_change_results():
    a, b = DedupLike(batch_size=10), DedupLike(batch_size=20)
    assert config_hash(a, {"batch_size"}) == config_hash(b, {"batch_size"})
    assert config_hash(a) != config_hash(b)
    assert config_hash(DedupLike(threshold=0.8), {"batch_size"}) != config_hash(a, {"batch_size"})


def test_configs_are_frozen():
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match="frozen"):
        DedupLike().threshold = 0.1
