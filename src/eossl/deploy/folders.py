"""Output folders written whole or not at all: built in a hidden temporary folder beside the target,
renamed over it only when complete."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from eossl.errors import ConfigError


@contextmanager
def atomic_folder(out: str | Path, overwrite: bool = False) -> Iterator[Path]:
    """Yield an empty temporary folder beside ``out``; it becomes ``out`` when the block succeeds (an
    existing ``out`` is replaced only with ``overwrite``, and only then) and is removed when it fails."""
    out = Path(out)
    if out.exists() and not overwrite:
        raise ConfigError(f"'{out}' already exists: choose another output or pass --overwrite")
    if out.exists() and not out.is_dir():
        raise ConfigError(f"'{out}' exists and is not a folder")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-", dir=out.parent))
    umask = os.umask(0)
    os.umask(umask)
    tmp.chmod(0o777 & ~umask)  # mkdtemp makes it private; the result is an ordinary folder
    try:
        yield tmp
        if out.exists():
            old = out.with_name(f".{out.name}.old-{tmp.name.rsplit('-', 1)[-1]}")
            out.rename(old)
            tmp.rename(out)
            shutil.rmtree(old, ignore_errors=True)
        else:
            tmp.rename(out)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
