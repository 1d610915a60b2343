"""Where a store lives: local folders (and the temporary folders of writers that were killed) or URLs
read through fsspec."""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

from eossl.errors import StoreError

ARRAYS_DIR = "arrays.zarr"


def remove_abandoned(path: Path) -> None:
    """Remove temporary folders of ``path`` left by writers that were killed (their process is gone), so a
    rerun starts clean; folders of live writers (another process importing) are left alone."""
    for tmp in path.parent.glob(f".{path.name}.tmp-*"):
        pid = tmp.name.rsplit(".tmp-", 1)[1].split("-")[0]
        if not pid.isdigit():
            continue
        try:
            os.kill(int(pid), 0)
        except ProcessLookupError:
            shutil.rmtree(tmp, ignore_errors=True)
        except PermissionError:  # alive, owned by someone else
            continue


def store_url(path: str | Path) -> str | None:
    """The URL of a remote store (``s3://``, ``gs://``, ``https://``, ...), or ``None`` for a local folder.

    ``file://`` URLs are local folders. Reading a remote store needs fsspec and the filesystem's own
    package (``s3fs``, ``gcsfs``; HTTP(S) works with eossl's dependencies).
    """
    text = str(path)
    if isinstance(path, Path) or "://" not in text or text.startswith("file://"):
        return None
    return text.rstrip("/")


def remote_arrays(url: str) -> Any:
    """A read-only zarr store over fsspec for ``URL/arrays.zarr``."""
    from zarr.storage import FsspecStore

    try:
        return FsspecStore.from_url(f"{url}/{ARRAYS_DIR}", read_only=True)
    except (ImportError, ValueError) as exc:
        raise StoreError(f"store '{url}': cannot open it through fsspec ({exc})") from None
