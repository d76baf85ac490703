"""Test session setup: CPU JAX with 8 virtual devices, TF without GPUs, fast compiles.

Must run before anything initialises a JAX backend (setting jax_num_cpu_devices after that
raises), hence module level.
"""

import os

from tests.jax_env import env_vars

# The test compile settings and the shared compilation cache (tests/jax_env.py says why);
# JAX_PLATFORMS only as a default.
for _key, _value in env_vars().items():
    if _key == "JAX_PLATFORMS":
        os.environ.setdefault(_key, _value)
    else:
        os.environ[_key] = _value
os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")  # TensorFlow must never grab a GPU in tests

import jax  # noqa: E402

jax.config.update("jax_num_cpu_devices", 8)
# Also as config values: JAX reads its environment variables when it is first imported, which a
# plugin may have done before this file ran (XLA_FLAGS is read later, at backend start).
jax.config.update("jax_disable_most_optimizations", True)
jax.config.update("jax_compilation_cache_dir", os.environ["JAX_COMPILATION_CACHE_DIR"])
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
