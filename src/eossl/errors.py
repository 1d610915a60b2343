"""The errors that mean "the input is wrong" (shown to users as one line, not a traceback)."""

from __future__ import annotations

from eossl.config import ConfigError
from eossl.data.splits import LabelFractionError
from eossl.data.store import StoreError
from eossl.models.encoders import EncoderError

USER_ERRORS = (ConfigError, StoreError, EncoderError, LabelFractionError, FileNotFoundError, KeyError)
