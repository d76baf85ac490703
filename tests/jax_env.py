"""The JAX settings of every test process: pytest's own and the subprocesses tests start.

Tests check behaviour, not speed, and on 2 CPU cores most of the suite's time is XLA compiling
(a fresh cache: `tests/mathart` alone spends most of its 9 minutes compiling). So every test
process compiles the cheap way and shares what it compiled:

- ``JAX_DISABLE_MOST_OPTIMIZATIONS``: XLA's fast-compile mode (flax's own tests use it).
- One persistent compilation cache for all of them (``JAXFAM_TEST_CACHE``, default
  ``~/.cache/jaxfam/test-xla``): a program one test compiled is read back by the next test,
  worker or subprocess that builds it (the resumed half of a CLI test, the tiny task's step).

Measured and not used: ``XLA_FLAGS=--xla_cpu_use_fusion_emitters=false`` (XLA:CPU's older loop
emitters instead of the MLIR fusion pipeline, which is most of a small U-Net step's compile
time) made `pytest tests/mathart` 25 % faster from an empty cache (417 s against 553 s), but it
changes rounding: `tests/vit/test_augment.py::test_pixel_ops_match_pil` then differs from PIL
by one grey level in 0.7 % of the contrast op's pixels.
"""

import os

CACHE_DIR = os.environ.get(
    "JAXFAM_TEST_CACHE", os.path.join(os.path.expanduser("~"), ".cache", "jaxfam", "test-xla")
)


def env_vars() -> dict[str, str]:
    """Environment variables that put a process (this one, before JAX starts, or a child) on
    CPU with the test compile settings."""
    return {
        "JAX_PLATFORMS": "cpu",
        "JAX_DISABLE_MOST_OPTIMIZATIONS": "1",
        "JAX_COMPILATION_CACHE_DIR": CACHE_DIR,
        "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS": "0",
        "TF_CPP_MIN_LOG_LEVEL": "3",
    }
