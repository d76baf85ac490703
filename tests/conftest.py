"""Test session setup: CPU JAX with 8 virtual devices, TF without GPUs, fast compiles.

Must run before anything initialises a JAX backend (setting jax_num_cpu_devices after that
raises), hence module level.
"""

import os

os.environ.setdefault("JAX_PLATFORMS", "cpu")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")  # TensorFlow must never grab a GPU in tests

import jax

jax.config.update("jax_num_cpu_devices", 8)
# Tests check behaviour, not speed: compile fast (flax's own tests do this), and share
# compiled programs between tests (the tiny task's step recurs) through the persistent cache.
jax.config.update("jax_disable_most_optimizations", True)
jax.config.update(
    "jax_compilation_cache_dir",
    os.environ.get(
        "JAXFAM_TEST_CACHE", os.path.join(os.path.expanduser("~"), ".cache", "jaxfam", "test-xla")
    ),
)
jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)

import pathlib  # noqa: E402

import pytest  # noqa: E402

REPO = pathlib.Path(__file__).resolve().parent.parent
SHARED = REPO.parent / "shared"


@pytest.fixture
def n_devices() -> int:
    return jax.device_count()


@pytest.fixture
def shared_dir() -> pathlib.Path:
    """../shared beside the checkout; tests needing it skip cleanly when it is absent."""
    if not SHARED.is_dir():
        pytest.skip(f"{SHARED} not found: real-data checks need ../shared beside the checkout")
    return SHARED
