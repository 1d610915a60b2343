"""Typed run configuration: YAML files plus ``key=value`` overrides, validated before any work starts.

The generic machinery lives here (:func:`parse_overrides`, :func:`validate_config`, :func:`load_config`,
:func:`dump_config`); the sections live with the layer they configure and are re-exported:
:class:`~eossl.data.config.DataConfig`, :class:`~eossl.models.config.EncoderConfig` and
:class:`~eossl.methods.config.PretrainConfig` (its ``method`` section is generated from the method
registry). This is a top-layer module: data, models, methods and evaluation never import it.
"""

from __future__ import annotations

import typing
from collections.abc import Iterator
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
from eossl.overrides import load_yaml, parse_overrides, shorten, show, validate_options  # noqa: F401  (re-exported)


def _merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in extra.items():
        out[key] = _merge(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


INT64_MAX = 2**63 - 1
"""No setting holds an integer beyond 64 bits (torch, numpy and Lightning overflow on them)."""


def _huge_integers(value: Any, key: str = "", seen: set[int] | None = None) -> Iterator[tuple[str, int]]:
    """``(dotted key, value)`` of every integer of ``value`` (nested dicts and lists) beyond 64 bits;
    a list or dict that holds itself (YAML ``&a [*a]``) is walked once."""
    seen = set() if seen is None else seen
    if isinstance(value, (dict, list, tuple)):
        if id(value) in seen:
            return
        seen.add(id(value))
    if isinstance(value, dict):
        for k, v in value.items():
            yield from _huge_integers(v, f"{key}.{k}" if key else str(k), seen)
    elif isinstance(value, (list, tuple)):
        for i, v in enumerate(value):
            yield from _huge_integers(v, f"{key}.{i}" if key else str(i), seen)
    elif isinstance(value, int) and not isinstance(value, bool) and not -INT64_MAX - 1 <= value <= INT64_MAX:
        yield key, value


def _model_in(annotation: Any) -> Any:
    """The model class of a section's annotation: itself, or the one model of ``Model | None``."""
    if isinstance(annotation, type):
        return annotation
    models = [a for a in typing.get_args(annotation) if isinstance(a, type) and issubclass(a, BaseModel)]
    return models[0] if len(models) == 1 else None


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
    huge = list(_huge_integers(raw))
    if huge:
        shown = "\n  ".join(
            f"'{show(key)}': {shorten(value, 40)} does not fit 64 bits (at most {INT64_MAX})" for key, value in huge
        )
        raise ConfigError(f"invalid {source}:\n  {shown}")
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
            key = show(".".join(loc))
            if err["type"] == "extra_forbidden":
                section = model
                for part in loc[:-1]:
                    field = section.model_fields.get(part) if isinstance(section, type) else None
                    section = _model_in(field.annotation) if field is not None else None
                if where:
                    section = METHODS[str(err["loc"][1])].config
                allowed = (
                    ", ".join(section.model_fields)
                    if isinstance(section, type) and issubclass(section, BaseModel)
                    else "see the documented schema"
                )
                problems.append(f"unknown key '{key}'{where} (allowed here: {allowed})")
            else:
                problems.append(f"'{key}'{where}: {err['msg']} (got {shorten(err.get('input'))})")
        raise ConfigError(f"invalid {source}:\n  " + "\n  ".join(problems)) from None


def _yaml_problem(exc: yaml.YAMLError) -> str:
    """One line for a YAML error: what is wrong and where (PyYAML's own text spans several lines)."""
    problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
    context = getattr(exc, "context", None)
    mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
    where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
    return f"{context + ', ' if context else ''}{problem}{where}"


def read_yaml_file(path: str | Path) -> dict[str, Any]:
    """The mapping a YAML config file holds (an empty file: ``{}``); :class:`ConfigError` naming the file
    when it is missing, not a file, not UTF-8 text, not valid YAML or not a mapping."""
    path = Path(path)
    if not path.exists():
        raise ConfigError(f"config file '{path}' does not exist")
    if path.is_dir():  # a device such as /dev/null reads as an empty config
        raise ConfigError(f"config file '{path}' is a folder (a YAML file was expected)")
    try:
        text = path.read_bytes().decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(
            f"config file '{path}' is not UTF-8 text (byte {exc.start}): a YAML file was expected"
        ) from None
    try:
        raw = load_yaml(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"config file '{path}' is not valid YAML: {_yaml_problem(exc)}") from None
    except RecursionError:
        raise ConfigError(f"config file '{path}' is nested too deeply to read") from None
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise ConfigError(
            f"config file '{path}' must hold a mapping of sections at the top level, not a {type(raw).__name__}"
        )
    return raw


def load_config(model: type[BaseModel], path: str | Path | None, overrides: list[str] | None = None) -> Any:
    """Read YAML ``path`` (optional), apply overrides, validate into ``model``."""
    raw: dict[str, Any] = {} if path is None else read_yaml_file(path)
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
