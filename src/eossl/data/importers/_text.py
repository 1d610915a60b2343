"""Reading an import's text files (split lists, metadata tables) with errors that name the file: a list
that is not UTF-8 text, a CSV that does not parse, is empty or lacks its columns.

A private module: importers import it; it registers no importer.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd

from eossl.errors import ImportDataError


def read_text(path: Path, what: str) -> str:
    """The UTF-8 text of ``path`` (a ``what``, e.g. "split list"); ImportDataError naming it otherwise."""
    try:
        return path.read_bytes().decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ImportDataError(f"'{path}': not UTF-8 text (byte {exc.start}); expected a {what}") from None
    except OSError as exc:
        raise ImportDataError(f"'{path}': cannot read the {what} ({exc.strerror or exc})") from None


def read_csv(path: Path, what: str, **options: Any) -> pd.DataFrame:
    """``pd.read_csv(path, **options)``; a file that is not UTF-8, does not parse or holds no columns
    raises ImportDataError naming it (a ``what``, e.g. "metadata table")."""
    try:
        return pd.read_csv(path, **options)
    except pd.errors.EmptyDataError:
        raise ImportDataError(f"'{path}': the {what} is empty (expected a header line of column names)") from None
    except UnicodeDecodeError as exc:
        raise ImportDataError(f"'{path}': not UTF-8 text (byte {exc.start}); expected a CSV {what}") from None
    except (pd.errors.ParserError, ValueError) as exc:
        raise ImportDataError(f"'{path}': not a readable CSV {what} ({_one_line(exc)})") from None
    except OSError as exc:
        raise ImportDataError(f"'{path}': cannot read the {what} ({exc.strerror or exc})") from None


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split())[:300]
