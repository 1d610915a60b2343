import pytest

from eossl.config import ConfigError, EvaluateConfig, PretrainConfig, load_config


def test_unknown_key_is_named_with_allowed_keys(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("data: {store: x}\noptim: {lrr: 0.1}\n")
    with pytest.raises(ConfigError, match=r"unknown key 'optim.lrr' \(allowed here: optimizer, lr"):
        load_config(PretrainConfig, path)


def test_overrides_and_type_errors(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("data: {store: x}\n")
    cfg = load_config(PretrainConfig, path, ["optim.lr=0.5", "trainer.max_steps=7", "data.batch_size=16"])
    assert cfg.optim.lr == 0.5 and cfg.trainer.max_steps == 7 and cfg.data.batch_size == 16
    with pytest.raises(ConfigError, match=r"'optim\.lr'"):
        load_config(PretrainConfig, path, ["optim.lr=fast"])
    with pytest.raises(ConfigError, match="must look like key=value"):
        load_config(PretrainConfig, path, ["optim.lr"])
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(PretrainConfig, tmp_path / "missing.yaml")


def test_fraction_range_is_checked():
    with pytest.raises(ConfigError, match=r"label fraction 1.5 must be in \(0, 1\]"):
        load_config(EvaluateConfig, None, ["data.store=x", "fractions=[0.1,1.5]"])
