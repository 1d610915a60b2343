"""The errors that mean "the input is wrong" (shown to users as one line, not a traceback)."""

from __future__ import annotations

from eossl.config import ConfigError
from eossl.data.splits import LabelFractionError
from eossl.data.store import StoreError
from eossl.evaluation.results import ResultsError
from eossl.models.encoders import EncoderError


class EmbeddingCollapseError(RuntimeError):
    """Pretraining stopped because the embedding stayed collapsed (see the run's summary.json)."""


USER_ERRORS = (
    ConfigError,
    StoreError,
    EncoderError,
    LabelFractionError,
    FileNotFoundError,
    KeyError,
    EmbeddingCollapseError,
    ResultsError,
)
