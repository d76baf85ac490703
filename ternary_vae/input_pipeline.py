"""Data of the ternary VAE: the 19,683 operations (or a user's subset), served whole.

There is no split, as in the original: the model is trained on every operation and evaluated
on every operation (the task is to embed all 19,683, not to generalise to unseen ones).
Training batches come from `common.data.ArraySource` (a seeded permutation per epoch,
resumable); the single eval split "val" is all operations in index order through
`ArrayEvalSource` (last batch padded and masked).

Rows carry ``trits`` float32 [9], ``index`` int32 (the operation's base-3 index) and
``valuation`` int32 (v3(index), v3(0) = 9).

Own data: ``--config.data_file=ops.npy`` with an int or float array [M, 9] of trits in
{-1, 0, 1} (loaded with allow_pickle=False) trains and evaluates on those M operations.
"""

import os

import ml_collections
import numpy as np

from common.data import ArrayEvalSource, ArraySource
from common.task import Datasets
from ternary_vae import ternary

EVAL_SPLIT = "val"


def load_operations(config: ml_collections.ConfigDict) -> dict[str, np.ndarray]:
    """All 3^9 operations in index order, or the rows of ``config.data_file``."""
    path = config.get("data_file")
    if not path:
        return ternary.all_operations()
    if not os.path.isfile(path):
        raise FileNotFoundError(f"config.data_file '{path}' does not exist")
    if not path.endswith(".npy"):
        raise ValueError(f"config.data_file must be a .npy array [M, 9] of trits, got '{path}'")
    trits = np.load(path, allow_pickle=False)
    if trits.ndim != 2 or trits.shape[1] != ternary.NUM_TRITS:
        raise ValueError(
            f"config.data_file '{path}' has shape {trits.shape}; expected [M, {ternary.NUM_TRITS}]"
        )
    if not np.all(np.isin(trits, (-1, 0, 1))):
        bad = trits[~np.isin(trits, (-1, 0, 1))].ravel()[:5]
        raise ValueError(
            f"config.data_file '{path}' holds values other than -1, 0, 1 (e.g. {bad.tolist()})"
        )
    index = ternary.trits_to_index(trits)
    return {
        "trits": trits.astype(np.float32),
        "index": index.astype(np.int32),
        "valuation": ternary.valuation(index),
    }


def build_datasets(config: ml_collections.ConfigDict) -> Datasets:
    ops = load_operations(config)
    return Datasets(
        train=ArraySource(ops, seed=config.seed),
        eval={EVAL_SPLIT: ArrayEvalSource(ops)},
    )


def rare_levels(ops: dict[str, np.ndarray], min_level: int) -> dict[str, np.ndarray]:
    """Every row of `ops` with v3 >= min_level (243 of the 3^9 for min_level 4).

    `ternary_vae.task` appends them to every stage-1 train batch. Level v holds 2*3^(8-v)
    operations, so a 512-batch of a random permutation sees level 6 about every other step and
    level 8 once an epoch: per-level statistics (means, variances, separation) of the rare
    levels would be noise. The reference's stratified sampler reserves 25% of each batch for
    v >= 4 for the same reason.
    """
    keep = ops["valuation"] >= min_level
    return {k: v[keep] for k, v in ops.items()}
