"""`mathart.transfer.carry_params` on hand-made parameter trees: embedding rows follow their
pieces, the optional family head may come or go, and any other mismatch is refused by name."""

import numpy as np
import pytest

from mathart import transfer

SPECIALS = ["<pad>", "<bos>"]


def _params(vocab_rows: int, width: int = 3, channels: int = 8, family_head: bool = False):
    rng = np.random.default_rng(vocab_rows + channels + width)
    normal = lambda *shape: rng.normal(size=shape).astype(np.float32)  # params are float32
    p = {
        "encoder": {"token_embed": {"embedding": normal(vocab_rows, width)}},
        "unet": {"conv": {"kernel": normal(3, 3, 4, channels)}},
    }
    if family_head:
        p["family_head"] = {"kernel": normal(width, 5)}
    return p


def test_rows_follow_their_pieces_and_new_pieces_stay_fresh():
    old_vocab = [*SPECIALS, "x", "y", "sin"]
    new_vocab = [*SPECIALS, "sin", "cos", "x"]
    loaded, fresh = _params(6, family_head=True), _params(6)
    fresh["unet"]["conv"]["kernel"] = fresh["unet"]["conv"]["kernel"] + 1.0
    out, report = transfer.carry_params(loaded, fresh, old_vocab, new_vocab)
    old, new = (
        loaded["encoder"]["token_embed"]["embedding"],
        out["encoder"]["token_embed"]["embedding"],
    )
    for piece in ("<pad>", "<bos>", "sin", "x"):
        np.testing.assert_array_equal(new[new_vocab.index(piece)], old[old_vocab.index(piece)])
    cos = new_vocab.index("cos")
    np.testing.assert_array_equal(new[cos], fresh["encoder"]["token_embed"]["embedding"][cos])
    np.testing.assert_array_equal(out["unet"]["conv"]["kernel"], loaded["unet"]["conv"]["kernel"])
    assert "family_head" not in out
    assert report == {
        "pieces_carried": 4,
        "pieces_new": ["cos"],
        "fresh_modules": [],
        "dropped_modules": ["family_head"],
    }


def test_same_vocabulary_copies_the_table_whole():
    vocab = [*SPECIALS, "x"]
    loaded = _params(5)
    out, report = transfer.carry_params(loaded, _params(5, family_head=True), vocab, vocab)
    np.testing.assert_array_equal(
        out["encoder"]["token_embed"]["embedding"], loaded["encoder"]["token_embed"]["embedding"]
    )
    assert report["fresh_modules"] == ["family_head"] and report["pieces_new"] == []


def test_another_architecture_is_refused_by_name():
    vocab = [*SPECIALS, "x"]
    with pytest.raises(
        ValueError,
        match=r"kernel has shape \(3, 3, 4, 8\), this config needs \(3, 3, 4, 16\)"
        r".*same model\.\* settings",
    ):
        transfer.carry_params(_params(5), _params(5, channels=16), vocab, vocab)
    with pytest.raises(ValueError, match="token embeddings are 3 wide, this config's 4"):
        transfer.carry_params(_params(5), _params(5, width=4), vocab, vocab)
    missing = _params(5)
    del missing["unet"]
    with pytest.raises(ValueError, match="missing unet/conv/kernel"):
        transfer.carry_params(missing, _params(5), vocab, vocab)
    with pytest.raises(ValueError, match="3 pieces but its embedding only 2 rows"):
        transfer.carry_params(_params(2), _params(5), vocab, vocab)
