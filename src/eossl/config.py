"""Typed run configuration: YAML files plus ``key=value`` overrides, validated before any work starts.

The generic machinery lives here (:func:`parse_overrides`, :func:`validate_config`, :func:`load_config`,
:func:`dump_config`); the sections live with the layer they configure and are re-exported:
:class:`~eossl.data.config.DataConfig`, :class:`~eossl.models.config.EncoderConfig` and
:class:`~eossl.methods.config.PretrainConfig` (its ``method`` section is generated from the method
registry). This is a top-layer module: data, models, methods and evaluation never import it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from eossl.data.config import DataConfig
from eossl.errors import ConfigError
from eossl.evaluation.config import EvaluateConfig
from eossl.io import write_text_atomic
from eossl.methods.config import HealthConfig, OptimConfig, PretrainConfig, TrainerConfig
from eossl.methods.registry import METHODS
from eossl.models.config import EncoderConfig
from eossl.overrides import parse_overrides, validate_options  # noqa: F401  (re-exported)


def _merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in extra.items():
        out[key] = _merge(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


def _method_tag_problem(err: dict[str, Any]) -> str | None:
    """The message for a missing or unknown ``method.name`` (the tag of the method union), else None."""
    if err["type"] == "union_tag_invalid":
        tag = err.get("ctx", {}).get("tag", err.get("input"))
        return f"'method.name': unknown method '{tag}' (available: {', '.join(METHODS.names())})"
    if err["type"] == "union_tag_not_found":
        return f"'method.name' is missing: name one of the methods ({', '.join(METHODS.names())})"
    return None


def validate_config(model: type[BaseModel], raw: dict[str, Any], source: str = "config") -> Any:
    """Validate ``raw`` into ``model``; errors name every offending key and what was expected."""
    try:
        return model.model_validate(raw)
    except ValidationError as exc:
        problems = []
        for err in exc.errors():
            loc = [str(p) for p in err["loc"]]
            where = ""
            if loc == ["method"] and (tag_problem := _method_tag_problem(err)):
                problems.append(tag_problem)
                continue
            if loc[:1] == ["method"] and len(loc) > 1 and loc[1] in METHODS:
                where = f" of method '{loc[1]}'"  # drop the tag of the discriminated method union
                loc = loc[:1] + loc[2:]
            key = ".".join(loc)
            if err["type"] == "extra_forbidden":
                section = model
                for part in loc[:-1]:
                    field = section.model_fields.get(part) if isinstance(section, type) else None
                    section = field.annotation if field is not None else None
                if where:
                    section = METHODS[str(err["loc"][1])].config
                allowed = (
                    ", ".join(section.model_fields)
                    if isinstance(section, type) and issubclass(section, BaseModel)
                    else "see the documented schema"
                )
                problems.append(f"unknown key '{key}'{where} (allowed here: {allowed})")
            else:
                problems.append(f"'{key}'{where}: {err['msg']} (got {err.get('input')!r})")
        raise ConfigError(f"invalid {source}:\n  " + "\n  ".join(problems)) from None


def load_config(model: type[BaseModel], path: str | Path | None, overrides: list[str] | None = None) -> Any:
    """Read YAML ``path`` (optional), apply overrides, validate into ``model``."""
    raw: dict[str, Any] = {}
    if path is not None:
        path = Path(path)
        if not path.exists():
            raise ConfigError(f"config file '{path}' does not exist")
        try:
            raw = yaml.safe_load(path.read_text()) or {}
        except yaml.YAMLError as exc:
            raise ConfigError(f"config file '{path}' is not valid YAML: {exc}") from exc
        if not isinstance(raw, dict):
            raise ConfigError(f"config file '{path}' must hold a mapping at the top level")
    raw = _merge(raw, parse_overrides(overrides or []))
    return validate_config(model, raw, source=str(path) if path else "config")


def dump_config(config: BaseModel, path: Path) -> None:
    """Write the resolved config as YAML, atomically."""
    write_text_atomic(path, yaml.safe_dump(config.model_dump(mode="json"), sort_keys=False))


__all__ = [
    "ConfigError",
    "DataConfig",
    "EncoderConfig",
    "EvaluateConfig",
    "HealthConfig",
    "OptimConfig",
    "PretrainConfig",
    "TrainerConfig",
    "dump_config",
    "load_config",
    "parse_overrides",
    "validate_config",
]
