"""What every fuzz test of the importers checks: an import of a damaged source either succeeds (and the
store reads back) or raises an :class:`~eossl.errors.EosslError` that names the damaged file; it never
raises another exception, never hangs; ``on_error=skip`` counts a bad file instead of failing.

Shared hypothesis settings (:data:`FUZZ`) keep the suite reproducible (derandomized, no example
database) and small (each example imports a few tiny files).
"""

from __future__ import annotations

import faulthandler
import os
import re
import shutil
import signal
import sys
import threading
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, settings

from eossl.data.importers import IMPORTERS
from eossl.data.importers.pipeline import read_report
from eossl.data.store import SampleStore
from eossl.errors import EosslError

FUZZ = settings(
    deadline=None,
    derandomize="EOSSL_FUZZ_RANDOM" not in os.environ,
    database=None,
    print_blob=False,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.function_scoped_fixture],
)
"""Hypothesis settings of the fuzz suite (reproducible: derandomized, no example database); each test
adds its ``max_examples``."""


def examples(default: int) -> int:
    """``max_examples`` of a fuzz test: ``default``, or ``EOSSL_FUZZ_EXAMPLES`` (e.g. 500 to fuzz longer;
    ``EOSSL_FUZZ_RANDOM=1`` also draws new examples on each run instead of the fixed ones)."""
    return int(os.environ.get("EOSSL_FUZZ_EXAMPLES", default))


EXAMPLES = examples(12)
"""Examples per importer and test (each imports a few tiny files, twice)."""

IMPORT_SECONDS = 30
"""An import of a damaged tiny dataset taking longer than this is a hang."""

CATCH_ALL = re.compile(r": \w+(?:\.\w+)*: .* \(in [\w.-]+\.py:\d+\)$", re.S)
"""How :func:`eossl.data.importers.pipeline.read_item` reports an exception that is not an EosslError
(``'<files>': TypeError: ... (in x.py:12)``): a crash in a reader, not a documented error."""


class Hang(BaseException):
    """Raised by :func:`time_limit` (a BaseException, so that no ``except Exception`` swallows it)."""


@contextmanager
def time_limit(seconds: float) -> Iterator[None]:
    """Fail with :class:`Hang` after ``seconds`` (SIGALRM); a hang inside C code that never returns to
    Python is caught by faulthandler, which dumps every thread's stack and ends the process."""
    faulthandler.dump_traceback_later(seconds * 2 + 10, exit=True)
    main = threading.current_thread() is threading.main_thread() and hasattr(signal, "SIGALRM")

    def _raise(signum: int, frame: Any) -> None:
        raise Hang(f"no result after {seconds} s: the import hangs")

    previous = signal.signal(signal.SIGALRM, _raise) if main else None
    if main:
        signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        if main:
            signal.setitimer(signal.ITIMER_REAL, 0)
            signal.signal(signal.SIGALRM, previous)
        faulthandler.cancel_dump_traceback_later()


def run_import(kind: str, source: Path, store: Path, options: dict[str, Any]) -> EosslError | None:
    """Import ``source`` in this process; the EosslError it raised, or None when it succeeded. Any
    other exception propagates (the test fails with its traceback)."""
    importer = IMPORTERS[kind]()
    config = importer.config(workers=0, **options)
    try:
        with time_limit(IMPORT_SECONDS):
            importer.write(source, store, config)
    except EosslError as exc:
        return exc
    return None


def read_back(store: Path) -> None:
    """The store opens, holds samples and every array reads in full."""
    opened = SampleStore(store)
    assert len(opened) > 0 and len(opened.table) == len(opened)
    for name in opened.modalities:
        assert opened.read(name).shape[0] == len(opened)


def names_for(damaged: Path, source: Path) -> list[str]:
    """What an error about ``damaged`` may name: the file, its stem, or its folder below the source."""
    out = [damaged.name, damaged.stem]
    if damaged.parent != source:
        out.append(damaged.parent.name)
    return [n for n in out if n]


def assert_names(message: str, names: Iterable[str], what: str) -> None:
    names = list(names)
    assert not CATCH_ALL.search(message), f"{what}: a reader crashed (not a documented error): {message}"
    assert "\n" not in message.strip(), f"{what}: the error is not one line: {message!r}"
    assert any(n in message for n in names), f"{what}: the error names none of {names}: {message}"


def check_import(
    kind: str,
    source: Path,
    work: Path,
    options: dict[str, Any],
    damaged: Path,
    names: Iterable[str] | None = None,
) -> tuple[EosslError | None, EosslError | None]:
    """Import the damaged ``source`` with ``on_error`` raise, then skip, and check the outcomes (see the
    module docstring); returns the two errors (None where the import succeeded)."""
    names = list(names) if names is not None else names_for(damaged, source)
    raised = run_import(kind, source, work / "raise", {**options, "on_error": "raise"})
    if raised is None:  # skip mode would import the same (tested where something is bad)
        read_back(work / "raise")
        return None, None
    assert not (work / "raise").exists(), "a failed import left a store behind"
    assert_names(str(raised), names, "on_error=raise")
    skipped = run_import(kind, source, work / "skip", {**options, "on_error": "skip"})
    if skipped is None:
        read_back(work / "skip")
        report = read_report(work / "skip")
        assert report["skipped"] >= 1, f"raise mode failed ({raised}) but skip mode skipped nothing"
        reasons = " ".join(s["reason"] + " " + " ".join(s["files"]) for s in report["skipped_items"])
        assert_names(reasons, names, "on_error=skip report")
    else:
        assert_names(str(skipped), names, "on_error=skip")
    return raised, skipped


def fresh_copy(template: Path, work: Path) -> Path:
    """A writable copy of a template dataset under ``work``."""
    return Path(shutil.copytree(template, work / template.name))


if sys.platform == "win32":  # pragma: no cover - SIGALRM and these fuzz tests are POSIX only
    raise ImportError("the fuzz suite needs POSIX signals")
