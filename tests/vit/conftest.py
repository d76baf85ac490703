"""Fixtures shared by the ViT tests."""

import jax
import pytest

from tests.vit.cifar_files import write_binary_archive
from vit import prepare_cifar10


@pytest.fixture(scope="module", autouse=True)
def fast_compiles():
    """XLA without most optimisations: compiles several times faster, which dominates these
    tiny models' test time (as flax's example tests do). Restored after each module so other
    families' tests are unaffected."""
    previous = jax.config.read("jax_disable_most_optimizations")
    jax.config.update("jax_disable_most_optimizations", True)
    yield
    jax.config.update("jax_disable_most_optimizations", previous)


@pytest.fixture(scope="session")
def binary_data_dir(tmp_path_factory):
    """A TFDS data_dir built from a generated binary archive (shared with test_train.py)."""
    root = tmp_path_factory.mktemp("binary")
    expected = write_binary_archive(root / "cifar-10-binary.tar.gz")
    data_dir = root / "tfds"
    rc = prepare_cifar10.main(
        ["--source", str(root / "cifar-10-binary.tar.gz"), "--data_dir", str(data_dir)]
    )
    assert rc == 0
    return data_dir, expected
