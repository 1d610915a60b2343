"""Atomic writes and output-folder locks.

Every output goes to a temporary file next to its target, unique to the writing process, and is
renamed over the target only when it is complete: a crash (or ``kill -9``) leaves the old file or the
new one, never a cut-off one, and two processes writing one file never share a temporary file.

:class:`OutputLock` keeps a second run out of a folder a run is using. The lock is an OS file lock
(``filelock``: ``flock`` on POSIX), so the kernel releases it when its process dies, however it dies:
a killed run never leaves a stale lock behind.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from filelock import FileLock, Timeout

from eossl.errors import EosslError

LOCK_FILE = ".eossl.lock"
"""The lock file a run holds in its output folder (its JSON names the holder)."""


class OutputFolderError(EosslError, OSError):
    """An output folder cannot be written, is full, or is in use by another run."""


def temporary_sibling(path: str | Path) -> Path:
    """A hidden name beside ``path``, unique to this process and call (``.NAME.tmp-PID-RANDOM``)."""
    path = Path(path)
    return path.with_name(f".{path.name}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}")


@contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it over ``path`` only when the block succeeds."""
    path = Path(path)
    tmp = temporary_sibling(path)
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


def check_writable(folder: str | Path, needed_bytes: int = 0, key: str = "out", create: bool = True) -> Path:
    """Check, before any work, that files can be written into ``folder`` (created, or with ``create``
    False only probed through its nearest existing parent) and that its disk has ``needed_bytes``
    free; an :class:`OutputFolderError` naming the folder and ``key`` else."""
    folder = Path(folder)
    try:
        if create:
            folder.mkdir(parents=True, exist_ok=True)
        existing = next(p for p in (folder, *folder.parents) if p.exists())
        if not existing.is_dir():
            raise NotADirectoryError(f"'{existing}' is a file, not a folder")
        probe = temporary_sibling(existing / "write-test")
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        raise OutputFolderError(f"'{key}': cannot write into '{folder}': {exc.strerror or exc}") from None
    free = shutil.disk_usage(existing).free
    if needed_bytes and free < needed_bytes:
        raise OutputFolderError(
            f"'{key}': '{folder}' has {free / 2**20:.0f} MiB free; this needs about {needed_bytes / 2**20:.0f} MiB"
        )
    return folder


class OutputLock:
    """Hold ``FOLDER/.eossl.lock`` while a run writes into ``folder``; a second run gets a clear error.

    Use as a context manager. The lock file is left in place (removing it would race with a waiting
    process); what it holds (pid, host, command, start time) only serves the error message.
    """

    def __init__(self, folder: str | Path, what: str = "run") -> None:
        self.folder, self.what = Path(folder), what
        self.path = self.folder / LOCK_FILE
        self._lock = FileLock(str(self.path), timeout=0)

    def holder(self) -> str:
        """Who holds the lock, as far as its file says."""
        try:
            info = json.loads(self.path.read_text(encoding="utf-8") or "{}")
        except (OSError, ValueError):
            return "another process"
        return f"{info.get('what', 'a run')} (pid {info.get('pid')} on {info.get('host')}, since {info.get('since')})"

    def __enter__(self) -> OutputLock:
        check_writable(self.folder)
        try:
            self._lock.acquire()
        except Timeout:
            raise OutputFolderError(
                f"'{self.folder}' is in use by {self.holder()}: wait for it to finish or choose another output folder"
            ) from None
        info = {"what": self.what, "pid": os.getpid(), "host": socket.gethostname(),
                "since": time.strftime("%Y-%m-%d %H:%M:%S"), "command": " ".join(sys.argv)}  # fmt: skip
        with open(self.path, "w", encoding="utf-8") as handle:  # the locked file itself: not renamed over
            json.dump(info, handle)
        return self

    def __exit__(self, *exc: object) -> None:
        self._lock.release()


__all__ = [
    "LOCK_FILE",
    "OutputFolderError",
    "OutputLock",
    "atomic_path",
    "check_writable",
    "temporary_sibling",
    "write_text_atomic",
    "write_yaml_atomic",
]
