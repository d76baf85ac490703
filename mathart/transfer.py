"""Carrying one mathart run's params into a new run (``config.init_from``).

Each run builds its tokenizer from its own training corpus, so another data seed, another
``data.num_train`` or a JSONL file of your own gives other pieces in other rows. The encoder's
embedding matrix always has ``model.vocab_size`` rows, so copying it whole would fit shape-wise
and silently hand every token another token's vector. `carry_params` matches embedding rows by
piece instead: a piece both vocabularies know keeps its trained vector, a new piece starts from
the new run's initialisation. Everything else must have the same shapes (the same ``model.*``
settings); only the optional family head may be present on one side and not the other (it
depends on ``data.source`` and ``loss.family_weight``).
"""

from collections.abc import Sequence
from typing import Any

import jax.numpy as jnp
import numpy as np
from flax import traverse_util

from common.checkpoint import require_params_fit
from common.optim import path_str

EMBEDDING_PATH = ("encoder", "token_embed", "embedding")
OPTIONAL_MODULES = ("family_head",)


def carry_params(
    loaded: Any,
    fresh: Any,
    source_vocab: Sequence[str],
    target_vocab: Sequence[str],
    source: str = "",
) -> tuple[dict, dict]:
    """Params for the new run and a report of what was carried.

    `loaded`: the init_from run's params; `fresh`: the new run's initial params; the vocabularies
    are the two tokenizers' pieces (row i of the embedding is piece i); `source` names the
    init_from run in errors.
    Returns (params shaped like `fresh`, {"pieces_carried", "pieces_new", "fresh_modules",
    "dropped_modules"}).
    """
    src = traverse_util.flatten_dict(dict(loaded))
    dst = traverse_util.flatten_dict(dict(fresh))
    # The embedding's row count and the optional modules may differ; nothing else may.
    comparable = lambda flat: traverse_util.unflatten_dict(
        {k: v for k, v in flat.items() if k != EMBEDDING_PATH and k[0] not in OPTIONAL_MODULES}
    )
    embedding_problems = []
    if EMBEDDING_PATH not in src:
        embedding_problems.append(f"missing {path_str(EMBEDDING_PATH)}")
    elif np.shape(src[EMBEDDING_PATH])[1:] != np.shape(dst[EMBEDDING_PATH])[1:]:
        embedding_problems.append(
            f"token embeddings are {np.shape(src[EMBEDDING_PATH])[1]} wide, this config's "
            f"{np.shape(dst[EMBEDDING_PATH])[1]}"
        )
    require_params_fit(comparable(src), comparable(dst), source, embedding_problems)
    for vocab, table, which in (
        (source_vocab, src[EMBEDDING_PATH], "init_from run's"),
        (target_vocab, dst[EMBEDDING_PATH], "new run's"),
    ):
        if len(vocab) > table.shape[0]:
            raise ValueError(
                f"the {which} tokenizer has {len(vocab)} pieces but its embedding only "
                f"{table.shape[0]} rows; model.vocab_size must be at least the vocabulary size"
            )

    out = {k: src.get(k, v) for k, v in dst.items()}
    if list(source_vocab) == list(target_vocab):
        carried, new = len(target_vocab), []
    else:
        row_of = {piece: i for i, piece in enumerate(source_vocab)}
        keep = [i for i, piece in enumerate(target_vocab) if piece in row_of]
        new = [piece for piece in target_vocab if piece not in row_of]
        table = jnp.asarray(dst[EMBEDDING_PATH])
        if keep:
            rows = jnp.asarray([row_of[target_vocab[i]] for i in keep])
            table = table.at[jnp.asarray(keep)].set(jnp.asarray(src[EMBEDDING_PATH])[rows])
        out[EMBEDDING_PATH] = table
        carried = len(keep)
    report = {
        "pieces_carried": carried,
        "pieces_new": new,
        "fresh_modules": sorted({k[0] for k in dst if k not in src}),
        "dropped_modules": sorted({k[0] for k in src if k not in dst}),
    }
    return traverse_util.unflatten_dict(out), report
