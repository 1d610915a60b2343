"""Shared fixtures: a small synthetic store generated once per test session."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from eossl.data.synth.generator import SynthSpec, synthesize_store

torch.set_num_threads(1)
SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


@pytest.fixture(scope="session")
def small_store(tmp_path_factory) -> Path:
    """60 locations x 4 seasons of 32x32 synthetic samples."""
    path = tmp_path_factory.mktemp("stores") / "small"
    return synthesize_store(path, SynthSpec(num_locations=60, seasons=4, patch_size=32, seed=3))
