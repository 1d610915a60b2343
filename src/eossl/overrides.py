"""``key=value`` overrides and option validation without the run configs (a light plumbing module: the
command line's importer options use it without importing models and methods)."""

from __future__ import annotations

from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from eossl.errors import ConfigError


def _set_dotted(tree: dict[str, Any], dotted: str, value: Any) -> None:
    node = tree
    parts = dotted.split(".")
    for part in parts[:-1]:
        node = node.setdefault(part, {})
        if not isinstance(node, dict):
            raise ConfigError(f"override '{dotted}': '{part}' is not a section")
    node[parts[-1]] = value


def parse_overrides(overrides: list[str]) -> dict[str, Any]:
    """``["optim.lr=0.1", "data.store=x"]`` -> nested dict (values parsed as YAML scalars/lists; a value
    that is not valid YAML, such as ``{stem}_mask.tif`` or ``**/*.tif``, is kept as the plain string)."""
    tree: dict[str, Any] = {}
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"override '{item}' must look like key=value (e.g. optim.lr=0.01)")
        key, raw = item.split("=", 1)
        try:
            value = yaml.safe_load(raw)
        except yaml.YAMLError:
            value = raw
        _set_dotted(tree, key.strip(), value)
    return tree


def validate_options(model: type[BaseModel], raw: dict[str, Any], what: str = "option") -> Any:
    """Validate a flat ``raw`` into ``model``; :class:`ConfigError` names every offending key."""
    try:
        return model.model_validate(raw)
    except ValidationError as exc:
        problems = []
        for err in exc.errors():
            key = ".".join(str(p) for p in err["loc"])
            if err["type"] == "extra_forbidden":
                problems.append(f"unknown {what} '{key}' (allowed: {', '.join(model.model_fields)})")
            else:
                problems.append(f"{what} '{key}': {err['msg']} (got {err.get('input')!r})")
        raise ConfigError("; ".join(problems)) from None
