"""``key=value`` overrides and option validation without the run configs (a light plumbing module: the
command line's importer options use it without importing models and methods)."""

from __future__ import annotations

from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from eossl.errors import ConfigError


class YamlLoader(yaml.SafeLoader):
    """``yaml.SafeLoader`` whose errors are all ``yaml.YAMLError``: a scalar that only looks like a date
    (``2020-13-45``) stays text, and a value its explicit tag cannot hold (``!!int abc``, ``!!bool x``)
    is a ``ConstructorError`` with its line, where the safe loader raises ``ValueError``, ``KeyError``,
    ``AttributeError`` or ``IndexError``."""

    def construct_yaml_timestamp(self, node: yaml.Node) -> Any:
        try:
            return super().construct_yaml_timestamp(node)
        except (ValueError, AttributeError):
            return self.construct_scalar(node)

    def construct_object(self, node: yaml.Node, deep: bool = False) -> Any:
        try:
            return super().construct_object(node, deep)
        except (ValueError, KeyError, AttributeError, IndexError, TypeError, OverflowError) as exc:
            problem = f"cannot make a {node.tag.rsplit(':', 1)[-1]} of {node.value!r} ({type(exc).__name__}: {exc})"
            raise yaml.constructor.ConstructorError(None, None, problem, node.start_mark) from None


YamlLoader.add_constructor("tag:yaml.org,2002:timestamp", YamlLoader.construct_yaml_timestamp)


MAX_DEPTH = 100
"""The deepest ``[``/``{`` nesting :func:`load_yaml` parses: PyYAML's scanner takes quadratic time in
it (thousands of brackets: minutes) and its parser recurses; no config comes near."""


def load_yaml(text: str) -> Any:
    """``yaml.safe_load(text)`` with :class:`YamlLoader`; raises ``yaml.YAMLError`` (also for flow
    collections nested deeper than :data:`MAX_DEPTH`) or ``RecursionError``."""
    depth = 0
    for char in text:
        if char in "[{":
            depth += 1
            if depth > MAX_DEPTH:
                raise yaml.YAMLError(f"brackets nested more than {MAX_DEPTH} levels deep")
        elif char in "]}":
            depth = max(depth - 1, 0)
    return yaml.load(text, Loader=YamlLoader)  # a SafeLoader subclass: no arbitrary objects


def show(text: Any) -> str:
    """``text`` for a one-line message: as it is when printable, else with escapes (``\\n``, ``\\x00``)."""
    text = str(text)
    return text if text.isprintable() else repr(text)[1:-1]


def _set_dotted(tree: dict[str, Any], item: str, dotted: str, value: Any) -> None:
    parts = dotted.split(".")
    if not all(part.strip() for part in parts):
        raise ConfigError(
            f"override '{show(item)}': key '{show(dotted)}' has an empty part (expected e.g. optim.lr=0.01)"
        )
    node = tree
    for part in parts[:-1]:
        node = node.setdefault(part, {})
        if not isinstance(node, dict):
            raise ConfigError(f"override '{show(dotted)}': '{show(part)}' is not a section")
    node[parts[-1]] = value


def parse_overrides(overrides: list[str]) -> dict[str, Any]:
    """``["optim.lr=0.1", "data.store=x"]`` -> nested dict (values parsed as YAML scalars/lists; a value
    that is not valid YAML, such as ``{stem}_mask.tif`` or ``**/*.tif``, is kept as the plain string)."""
    tree: dict[str, Any] = {}
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"override '{show(item)}' must look like key=value (e.g. optim.lr=0.01)")
        key, raw = item.split("=", 1)
        try:
            value = load_yaml(raw)
        except yaml.YAMLError:
            value = raw
        except RecursionError:
            raise ConfigError(f"override '{show(key.strip())}': the value is nested too deeply") from None
        _set_dotted(tree, item, key.strip(), value)
    return tree


def validate_options(model: type[BaseModel], raw: dict[str, Any], what: str = "option") -> Any:
    """Validate a flat ``raw`` into ``model``; :class:`ConfigError` names every offending key."""
    try:
        return model.model_validate(raw)
    except ValidationError as exc:
        problems = []
        for err in exc.errors():
            key = show(".".join(str(p) for p in err["loc"]))
            if err["type"] == "extra_forbidden":
                problems.append(f"unknown {what} '{key}' (allowed: {', '.join(model.model_fields)})")
            else:
                problems.append(f"{what} '{key}': {err['msg']} (got {shorten(err.get('input'))})")
        raise ConfigError("; ".join(problems)) from None


def shorten(value: Any, limit: int = 200) -> str:
    """``repr(value)``, cut to about ``limit`` characters (a huge or deeply nested input stays readable)."""
    try:
        text = repr(value)
    except RecursionError:
        text = f"<a {type(value).__name__} nested too deeply to show>"
    return text if len(text) <= limit else text[:limit] + " ..."
