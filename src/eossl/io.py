"""Atomic writes: every output goes to a temporary file next to its target and is renamed over it."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it over ``path`` only when the block succeeds."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        yield tmp
        tmp.replace(path)
    finally:
        tmp.unlink(missing_ok=True)


def write_text_atomic(path: str | Path, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def write_yaml_atomic(path: str | Path, payload: object) -> None:
    """``payload`` (plain data) as YAML, keys in their order, written atomically."""
    import yaml

    write_text_atomic(path, yaml.safe_dump(payload, sort_keys=False))
