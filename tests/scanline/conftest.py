"""Shared fixtures for the scanline tests: one tiny synthetic dataset per session."""

import pathlib

import numpy as np
import pytest

from scanline import synth


@pytest.fixture(scope="session")
def tiny_synth() -> dict[str, np.ndarray]:
    """24 images of 32x32 with 2 copies per source (groups), generated once."""
    return synth.generate(24, seed=3, copies=2, size=32)


@pytest.fixture(scope="session")
def smoke_data_dir(tmp_path_factory) -> pathlib.Path:
    """A data_dir whose synthetic cache the smoke runs share (generated on first use)."""
    return tmp_path_factory.mktemp("scanline_data")
