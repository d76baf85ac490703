"""What a run ran on: package versions and devices, recorded by the loop (log and checkpoint
metadata), `common.bench` and `common.campaign`, so every figure names its software."""

import importlib
import platform
from importlib import metadata

import jax

# The stack a result depends on; TensorFlow and TFDS are optional and reported when present.
PACKAGES = (
    "jax",
    "jaxlib",
    "flax",
    "optax",
    "orbax-checkpoint",
    "clu",
    "ml-collections",
    "numpy",
    "tensorboard",
    "tensorflow-datasets",
    "tensorflow",
    "tensorflow-cpu",
)


def versions() -> dict[str, str]:
    """{package: version} for `PACKAGES` that are installed, plus Python's own version."""
    out = {"python": platform.python_version()}
    for name in PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return out


def devices() -> dict:
    """Backend, device kind and counts, as the run sees them."""
    local = jax.local_devices()
    return {
        "backend": jax.default_backend(),
        "device_kind": local[0].device_kind,
        "device_count": jax.device_count(),
        "local_device_count": len(local),
        "process_count": jax.process_count(),
    }


class MissingExtraError(ImportError):
    """An optional part of the project is used without its extra installed."""


def require_extra(module: str, extra: str, needed_by: str, package: str = "") -> object:
    """Imports `module` of the ``[extra]`` install, or says in one line what needs it and how
    to get it (instrument readers, Weights & Biases, ...)."""
    try:
        return importlib.import_module(module)
    except ImportError as e:
        raise MissingExtraError(
            f"{needed_by} needs {package or module}: pip install -e '.[{extra}]'"
        ) from e
