"""The errors meant for users: one base, :class:`EosslError`, shown by the CLI as one line.

This module is a leaf: it imports nothing from eossl, so every layer can raise these errors without
import cycles. Anything that is not an :class:`EosslError` is a bug and keeps its traceback. Each
error also derives from the built-in type that describes it (``ValueError``, ``RuntimeError``), so
callers that catch those keep working.
"""

from __future__ import annotations


class EosslError(Exception):
    """Base of every error caused by the user's input (config, files, data); the message says what to change."""


class ConfigError(EosslError, ValueError):
    """A configuration file or override is invalid; the message names the key."""


class UnknownNameError(ConfigError):
    """A name (method, protocol, init, encoder, task kind, importer, ...) is not in its registry."""


class StoreError(EosslError, ValueError):
    """A store is missing, incomplete, of an unknown format version or does not hold what was asked for."""


class ImportDataError(EosslError, ValueError):
    """A source file of an import is missing, damaged or does not fit the layout; the message names the file."""


class MetadataError(EosslError, ValueError):
    """A metadata column cannot be turned into input planes."""


class LabelFractionError(EosslError, ValueError):
    """A label fraction leaves a class (or the whole subset) without samples."""


class EncoderError(EosslError, ValueError):
    """An encoder cannot be built or does not fit the data it is given."""


class CheckpointError(EosslError, ValueError):
    """A checkpoint file is missing, damaged, unsafe or not one eossl wrote."""


class ResultsError(EosslError, ValueError):
    """A results file cannot be read as eossl results."""


class EmbeddingCollapseError(EosslError, RuntimeError):
    """Pretraining stopped because the embedding stayed collapsed (see the run's summary.json)."""


__all__ = [
    "CheckpointError",
    "ConfigError",
    "EmbeddingCollapseError",
    "EncoderError",
    "EosslError",
    "ImportDataError",
    "LabelFractionError",
    "MetadataError",
    "ResultsError",
    "StoreError",
    "UnknownNameError",
]
