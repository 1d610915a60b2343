"""The method registry: each method is one registered unit, and the config schema is generated from it."""

from __future__ import annotations

import importlib
import inspect
import pkgutil
import typing

import pytest
from typer.testing import CliRunner

from eossl.cli.main import app
from eossl.config import ConfigError, PretrainConfig, load_config
from eossl.errors import UnknownNameError
from eossl.methods import METHODS, MethodConfig
from eossl.methods.base import PretrainMethod
from eossl.methods.config import OptimConfig
from eossl.methods.objectives import OBJECTIVES
from eossl.methods.optimizers import OPTIMIZERS
from eossl.methods.zoo.cross_modal import CrossModalConfig

runner = CliRunner()


def _union_members() -> set[type]:
    return set(typing.get_args(PretrainConfig.model_fields["method"].annotation))


def test_every_registered_method_is_a_member_of_the_config_union():
    members = _union_members()
    assert len(members) == len(METHODS) >= 13
    for name, method in METHODS.items():
        assert issubclass(method, PretrainMethod) and method.name == name
        assert issubclass(method.config, MethodConfig) and method.config in members, name
        assert method.config.model_fields["name"].default == name
        cfg = load_config(PretrainConfig, None, ["data.store=x", f"method.name={name}"])
        assert type(cfg.method) is method.config


def test_every_zoo_file_registers_its_methods():
    """No stray file in the zoo: each module defines (and registers) at least one method."""
    import eossl.methods.zoo as zoo

    registered = set(METHODS.values())
    for info in pkgutil.iter_modules(zoo.__path__):
        module = importlib.import_module(f"eossl.methods.zoo.{info.name}")
        defined = {c for _, c in inspect.getmembers(module, inspect.isclass) if c.__module__ == module.__name__}
        assert defined & registered, info.name


def test_eossl_methods_lists_every_registered_method():
    result = runner.invoke(app, ["methods"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    names = [line.split()[0] for line in result.output.splitlines() if not line.startswith(" ")]
    assert names == METHODS.names()


def test_choices_are_generated_from_the_registries():
    assert typing.get_args(OptimConfig.model_fields["optimizer"].annotation) == tuple(OPTIMIZERS.names())
    assert set(OPTIMIZERS.names()) == {"adamw", "sgd", "lars"}
    assert typing.get_args(CrossModalConfig.model_fields["objective"].annotation) == tuple(OBJECTIVES.names())
    assert set(OBJECTIVES.names()) == {"nt-xent", "vicreg", "barlow-twins"}


@pytest.mark.parametrize(
    "overrides, message",
    [
        (["method.name=simclar"], r"'method\.name': unknown method 'simclar' \(available: .*simclr"),
        (["method={temperature: 0.1}"], r"'method\.name' is missing: name one of the methods \(.*byol"),
        (["optim.optimizer=adam"], r"'optim\.optimizer': Input should be 'adamw', 'sgd' or 'lars'"),
        (
            ["method.name=dual-simclr", "method.objective=infonce"],
            r"'method\.objective' of method 'dual-simclr': Input should be 'nt-xent', 'vicreg' or 'barlow-twins'",
        ),
    ],
)
def test_unknown_names_are_config_errors_naming_the_available_ones(overrides, message):
    with pytest.raises(ConfigError, match=message):
        load_config(PretrainConfig, None, ["data.store=x", *overrides])


@pytest.mark.parametrize("registry, known", [(METHODS, "simclr"), (OPTIMIZERS, "adamw"), (OBJECTIVES, "nt-xent")])
def test_registries_name_what_they_hold(registry, known):
    with pytest.raises(UnknownNameError, match=rf"unknown {registry.kind} 'nope' \(available: .*{known}"):
        registry["nope"]
    assert isinstance(UnknownNameError("x"), ConfigError)


def test_unknown_method_on_the_command_line_is_one_line():
    result = runner.invoke(app, ["pretrain", "/dev/null", "data.store=x", "method.name=simclar"])
    assert result.exit_code == 2 and "unknown method 'simclar' (available: " in result.output
    assert "Traceback" not in result.output
