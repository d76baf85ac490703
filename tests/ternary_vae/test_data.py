"""The ternary universe: index order, valuations, level sizes, own-data loading."""

import numpy as np
import pytest

from ternary_vae import input_pipeline, ternary


def test_index_order_is_little_endian_base3_minus_one():
    ops = ternary.all_operations()
    x = ops["trits"]
    assert x.shape == (19683, 9) and x.dtype == np.float32
    np.testing.assert_array_equal(ops["index"], np.arange(19683))
    np.testing.assert_array_equal(x[0], -np.ones(9))
    np.testing.assert_array_equal(x[-1], np.ones(9))
    # 1 = digit 1 at position 0 -> trit 0; 3 = digit 1 at position 1.
    np.testing.assert_array_equal(x[1], [0, -1, -1, -1, -1, -1, -1, -1, -1])
    np.testing.assert_array_equal(x[3], [-1, 0, -1, -1, -1, -1, -1, -1, -1])
    # 9841 = sum 3^k: every digit 1, the all-zero operation.
    np.testing.assert_array_equal(x[9841], np.zeros(9))
    # hand-written: 5 = 2 + 1*3 -> digits (2, 1, 0, ...) -> trits (1, 0, -1, ...)
    np.testing.assert_array_equal(x[5], [1, 0, -1, -1, -1, -1, -1, -1, -1])
    np.testing.assert_array_equal(ternary.trits_to_index(x), np.arange(19683))


def test_valuation_table_and_level_sizes():
    ops = ternary.all_operations()
    v = ops["valuation"]
    assert v[0] == 9
    picks = (1, 2, 3, 6, 9, 18, 27, 81, 6561, 13122)
    assert [v[i] for i in picks] == [0, 0, 1, 1, 2, 2, 3, 4, 8, 8]
    sizes = np.bincount(v, minlength=10)
    np.testing.assert_array_equal(sizes, [13122, 4374, 1458, 486, 162, 54, 18, 6, 2, 1])
    np.testing.assert_array_equal(sizes, ternary.level_sizes())
    # v3(i) = number of leading -1 trits (digit 0) from position 0, for every i.
    leading = np.argmax(ops["trits"] != -1, axis=1)
    leading[np.all(ops["trits"] == -1, axis=1)] = 9
    np.testing.assert_array_equal(v, leading)


def test_device_valuation_matches_host_on_index_differences():
    import jax.numpy as jnp

    rng = np.random.default_rng(0)
    i, j = rng.integers(0, 19683, 5000), rng.integers(0, 19683, 5000)
    i[:3], j[:3] = (0, 5, 19682), (0, 5, 0)
    host = ternary.valuation(np.abs(i - j))
    device = np.asarray(ternary.valuation_jnp(jnp.asarray(i - j)))
    np.testing.assert_array_equal(device, host)
    assert host[0] == host[1] == 9  # identical indices count as v3 = 9 (capped)


def test_rare_levels_are_every_operation_from_min_level():
    ops = ternary.all_operations()
    rare = input_pipeline.rare_levels(ops, 4)
    assert len(rare["trits"]) == 162 + 54 + 18 + 6 + 2 + 1
    assert rare["valuation"].min() == 4


def test_own_data_file(tmp_path):
    good = np.array([[-1] * 9, [0] * 9, [1, 0, -1, 0, 1, 0, -1, 0, 1]], np.int8)
    path = tmp_path / "ops.npy"
    np.save(path, good)
    import ml_collections

    ops = input_pipeline.load_operations(ml_collections.ConfigDict({"data_file": str(path)}))
    np.testing.assert_array_equal(ops["index"], ternary.trits_to_index(good))
    assert ops["valuation"][0] == 9 and ops["trits"].dtype == np.float32

    np.save(tmp_path / "bad.npy", np.full((2, 9), 2))
    with pytest.raises(ValueError, match="other than -1, 0, 1"):
        input_pipeline.load_operations(
            ml_collections.ConfigDict({"data_file": str(tmp_path / "bad.npy")})
        )
    np.save(tmp_path / "shape.npy", np.zeros((2, 8)))
    with pytest.raises(ValueError, match=r"expected \[M, 9\]"):
        input_pipeline.load_operations(
            ml_collections.ConfigDict({"data_file": str(tmp_path / "shape.npy")})
        )
