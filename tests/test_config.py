from pathlib import Path

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


def test_method_keys_are_checked_per_method():
    with pytest.raises(ConfigError, match=r"unknown key 'method\.temperature' of method 'byol' \(allowed here: name, "):
        load_config(PretrainConfig, None, ["data.store=x", "method.name=byol", "method.temperature=0.1"])
    with pytest.raises(ConfigError, match=r"'method\.teacher_temperature' of method 'dino': Input should be greater"):
        load_config(PretrainConfig, None, ["data.store=x", "method.name=dino", "method.teacher_temperature=-1"])
    with pytest.raises(ConfigError, match=r"'method\.name': unknown method 'simclar' \(available: .*simclr"):
        load_config(PretrainConfig, None, ["data.store=x", "method.name=simclar"])


def test_method_defaults_follow_the_chosen_method():
    cfg = load_config(PretrainConfig, None, ["data.store=x", "method.name=moco-v2", "method.queue_size=1024"])
    assert cfg.method.queue_size == 1024 and cfg.method.temperature == 0.2 and cfg.method.momentum == 0.99
    assert load_config(PretrainConfig, None, ["data.store=x"]).method.name == "simclr"


@pytest.mark.parametrize("path", sorted(Path(__file__).resolve().parents[1].joinpath("configs").glob("*.yaml")))
def test_example_configs_validate(path):
    from eossl.deploy.finetune import FinetuneConfig

    model = PretrainConfig if path.name.startswith("pretrain") else EvaluateConfig
    model = FinetuneConfig if path.name == "finetune.yaml" else model
    cfg = load_config(model, path)
    if path.name.startswith("pretrain_"):
        assert cfg.method.name.replace("-", "_") == path.stem.removeprefix("pretrain_")


@pytest.mark.parametrize("key", ["max_steps", "max_epochs"])
@pytest.mark.parametrize("value", [0, -2])
def test_a_run_that_would_train_nothing_is_refused(key, value):
    with pytest.raises(ConfigError, match=rf"'trainer\.{key}': .*must be a positive number or -1 \(no limit\)"):
        load_config(PretrainConfig, None, ["data.store=x", f"trainer.{key}={value}"])
    assert getattr(load_config(PretrainConfig, None, ["data.store=x", f"trainer.{key}=-1"]).trainer, key) == -1


def test_sections_live_with_their_layers_and_are_re_exported():
    from eossl import config
    from eossl.data.config import DataConfig
    from eossl.methods.config import PretrainConfig as MethodsPretrainConfig
    from eossl.models.config import EncoderConfig

    assert config.DataConfig is DataConfig and config.EncoderConfig is EncoderConfig
    assert config.PretrainConfig is MethodsPretrainConfig is PretrainConfig
