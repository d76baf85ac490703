"""Dataset: sampler, formula splits, build on a tiny config, de-duplication, JSONL loader,
augmentation, and the TFDS builder (tiny config, offline)."""

import collections
import json

import jax
import numpy as np
import pytest
from PIL import Image

from configs.mathart import get_config
from mathart.dataset import (
    COMPLEXITY_MIX,
    FAMILIES,
    FAMILY_COMPLEXITY,
    JsonlError,
    build_arrays,
    build_dataset,
    captions_to_jsonl,
    load_jsonl,
    sample,
    sample_family,
    split_of,
)
from mathart.dataset.augment import augment, colour_jitter
from mathart.dataset.phash import Deduplicator, ink, phash
from mathart.formula import Tokenizer, normalize, parse
from mathart.input_pipeline import load_eval_split

R = 32  # one resolution for the whole file (and the renderer tests): compiles are shared


@pytest.fixture(scope="module")
def splits():
    """A tiny build of each split (shared: rendering compiles once per structure)."""
    return {
        s: build_dataset(R, s, n, seed=0)
        for s, n in [("train", 12), ("validation", 6), ("test", 6)]
    }


def test_sampler_families_parse_and_complexity_mix():
    rng = np.random.default_rng(0)
    for name in FAMILIES:
        for _ in range(20):
            parse(sample_family(name, rng))  # raises on a sampler bug
    counts = collections.Counter(sample(np.random.default_rng([1, j]))[2] for j in range(3000))
    for level, share in enumerate(COMPLEXITY_MIX):
        assert counts[level] / 3000 == pytest.approx(share, abs=0.03)
    _, family, level = sample(np.random.default_rng(5))
    assert FAMILY_COMPLEXITY[family] == level
    with pytest.raises(ValueError, match="unknown family"):
        sample_family("spirograph", rng)


def test_build_arrays_contract(splits):
    arrays, stats = splits["train"]
    assert set(arrays) == {"image", "formula", "family", "complexity", "style_seed"}
    assert arrays["image"].shape == (12, R, R, 3) and arrays["image"].dtype == np.uint8
    assert arrays["formula"].dtype.kind == "U" and arrays["formula"].shape == (12,)
    for k in ("family", "complexity", "style_seed"):
        assert arrays[k].dtype == np.int32 and arrays[k].shape == (12,)
    assert ((arrays["family"] >= 0) & (arrays["family"] < len(FAMILIES))).all()
    assert (np.asarray(FAMILY_COMPLEXITY)[arrays["family"]] == arrays["complexity"]).all()
    for text in arrays["formula"]:
        assert parse(str(text)).text == text  # stored in canonical form
    assert stats.kept == 12 and stats.rendered >= 12
    assert stats.candidates == stats.other_split + stats.exact_duplicates + stats.rendered
    assert stats.kept + stats.blank + stats.perceptual_duplicates <= stats.rendered
    # Images are non-trivial and differ from each other.
    assert all(img.std() > 3 for img in arrays["image"])
    assert len({img.tobytes() for img in arrays["image"]}) == 12


def test_build_is_deterministic_and_prefix_stable(splits):
    arrays, _ = splits["train"]
    again = build_arrays(R, "train", 5, seed=0)
    for k in arrays:
        np.testing.assert_array_equal(again[k], arrays[k][:5])
    other = build_arrays(R, "train", 5, seed=1)
    assert set(other["formula"]) != set(arrays["formula"][:5])


def test_splits_hold_disjoint_formulas(splits):
    sets = {s: set(a["formula"].tolist()) for s, (a, _) in splits.items()}
    assert not sets["train"] & sets["validation"]
    assert not sets["train"] & sets["test"]
    assert not sets["validation"] & sets["test"]
    for s, texts in sets.items():
        assert all(split_of(t) == s for t in texts)
    # The split is a function of the formula, not of its spelling.
    for raw in ["y = 2x² + sin x", "r = cos(4θ)", "x^2+y^2=4"]:
        assert split_of(parse(raw).text) == split_of(parse(normalize(raw)).text)
    # Roughly 80/10/10 over many formulas.
    texts = {parse(sample(np.random.default_rng([2, j]))[0]).text for j in range(3000)}
    shares = collections.Counter(split_of(t) for t in texts)
    assert shares["train"] / len(texts) == pytest.approx(0.8, abs=0.04)


def test_perceptual_deduplication():
    a = np.zeros((R, R, 3), np.uint8)
    a[8:24, 8:24] = 255
    b = a.copy()
    b[0, 0] = 3  # imperceptible change
    c = np.zeros_like(a)
    c[2:10, 20:30] = 255
    bg = np.zeros(3)
    maps = [ink(x, bg) for x in (a, b, c)]
    assert phash(maps[0]) == phash(maps[1]) != phash(maps[2])
    dedup = Deduplicator()
    assert [dedup.add(m) for m in maps] == [True, False, True]
    assert dedup.removed == 1


def test_symmetric_shapes_that_share_a_phash_are_not_duplicates():
    """Centred symmetric drawings can collide in the 64-bit pHash (their odd DCT terms
    vanish); the thumbnail check keeps them apart."""
    from mathart.render import Style, render

    texts = ["abs(x/1.5)^0.8 + abs(y/1.5)^0.8 = 1", "abs(x/4.25)^0.5 + abs(y/1.5)^0.5 = 1"]
    style = Style()
    maps = [ink(img, np.asarray(style.background)) for img in render(texts, R, [style] * 2)]
    assert phash(maps[0]) == phash(maps[1])  # the premise: a hash collision
    dedup = Deduplicator()
    assert dedup.add(maps[0]) and dedup.add(maps[1])


def test_cache_round_trip(tmp_path, splits):
    arrays = build_arrays(R, "validation", 6, seed=0, cache_dir=str(tmp_path))
    files = list(tmp_path.glob("*.npz"))
    assert len(files) == 1
    cached = build_arrays(R, "validation", 6, seed=0, cache_dir=str(tmp_path))
    for k in arrays:
        np.testing.assert_array_equal(arrays[k], cached[k])
        np.testing.assert_array_equal(arrays[k], splits["validation"][0][k])
    with np.load(files[0], allow_pickle=False) as data:  # no pickled objects inside
        assert set(data.files) == set(arrays)


def test_eval_split_of_procedural_data_is_the_splits_prefix(tmp_path, splits):
    # `mathart.evaluate` reads a procedural run's split from the cache, first rows only.
    config = get_config("smoke")
    config.data_dir = str(tmp_path)
    config.data.image_size = R
    config.data.num_train, config.data.num_val, config.data.num_test = 12, 6, 0
    truth = splits["train"][0]
    tok = Tokenizer.build(str(f) for f in truth["formula"])
    train = load_eval_split(config, "train", tok, num=4)
    np.testing.assert_array_equal(train.arrays["image"], truth["image"][:4])
    assert list(train.formulas) == list(truth["formula"][:4])
    with pytest.raises(ValueError, match="has no 'test' split"):
        load_eval_split(config, "test", tok)


def test_bad_arguments():
    with pytest.raises(ValueError, match="unknown split 'val'"):
        build_arrays(R, "val", 4)
    with pytest.raises(ValueError, match="resolution"):
        build_arrays(2, "train", 4)


# ---- JSONL ---------------------------------------------------------------------------------------


def _png(path, size=(40, 20), colour=(255, 0, 0)):
    Image.new("RGB", size, colour).save(path)


def test_jsonl_loader_good_and_bad_lines(tmp_path):
    (tmp_path / "img").mkdir()
    _png(tmp_path / "img" / "a.png", (40, 20), (255, 0, 0))
    _png(tmp_path / "img" / "b.png", (16, 16), (0, 0, 255))
    (tmp_path / "img" / "broken.png").write_bytes(b"not an image")
    good = [
        {"image_path": "img/a.png", "formula": "y = 2x²"},
        {"image": "img/b.png", "prompt": "a blue square"},
    ]
    bad = [
        "{not json",
        json.dumps([1, 2]),
        json.dumps({"formula": "y = x"}),
        json.dumps({"image": "img/a.png"}),
        json.dumps({"image": "img/missing.png", "prompt": "x"}),
        json.dumps({"image": "img/broken.png", "prompt": "x"}),
        json.dumps({"image": "img/a.png", "formula": "__import__('os')"}),
        json.dumps({"image": "img/a.png", "prompt": ""}),
    ]
    path = tmp_path / "data.jsonl"
    path.write_text("\n".join([json.dumps(good[0]), *bad, "", json.dumps(good[1])]) + "\n")
    with pytest.raises(JsonlError) as info:
        load_jsonl(str(path), 16)
    msg = str(info.value)
    numbers = [n for n, _ in info.value.problems]
    assert numbers == [2, 3, 4, 5, 6, 7, 8, 9]
    for fragment in [
        "line 2: not valid JSON",
        "line 3: expected a JSON object",
        "line 4: missing the image path",
        "line 5: missing the text",
        "line 6: image file 'img/missing.png' not found",
        "line 7: cannot read image",
        "line 8: invalid formula",
        "line 9: 'prompt' must be a non-empty string",
    ]:
        assert fragment in msg, msg
    data = load_jsonl(str(path), 16, skip_bad_lines=True)
    assert data["image"].shape == (2, 16, 16, 3) and data["image"].dtype == np.uint8
    assert data["formula"].tolist() == ["y = 2*x^2", "a blue square"]
    assert data["is_formula"].tolist() == [True, False]
    assert (data["family"] == -1).all()
    assert (data["image"][0] == [255, 0, 0]).all()  # centre crop of a uniform image
    with pytest.raises(FileNotFoundError):
        load_jsonl(str(tmp_path / "nope.jsonl"), 16)


def test_captions_folder_to_jsonl(tmp_path):
    folder = tmp_path / "images"
    folder.mkdir()
    for i in range(3):
        _png(folder / f"image_{i:05d}.jpg", (32, 32), (10 * i, 0, 0))
    (folder / "captions.json").write_text(
        json.dumps({f"image_{i:05d}.jpg": f"A car {i}\nsecond line" for i in range(3)})
    )
    out = tmp_path / "train.jsonl"
    assert captions_to_jsonl(str(folder), str(out)) == 3
    data = load_jsonl(str(out), 8)
    assert data["formula"].tolist() == ["A car 0", "A car 1", "A car 2"]
    assert not data["is_formula"].any()


# ---- augmentation --------------------------------------------------------------------------------


def test_augmentation_keeps_geometry_for_formulas():
    img = np.zeros((2, 16, 16, 3), np.float32)
    img[:, 4:8, 2:12] = [0.9, 0.2, 0.1]
    out = np.asarray(augment(img, jax.random.key(0)))
    assert out.shape == img.shape
    # Colour changes, geometry does not: the ink mask is unchanged.
    assert ((out.max(-1) > 0.1) == (img.max(-1) > 0.1)).all()
    # Zero jitter is the identity (the YIQ round trip is exact to float precision).
    same = np.asarray(colour_jitter(img, jax.random.key(1), brightness=0.0, hue=0.0))
    np.testing.assert_allclose(same, img, atol=1e-5)
    moved = np.asarray(augment(img, jax.random.key(0), geometric=True))
    assert moved.shape == img.shape


# ---- TFDS ---------------------------------------------------------------------------------------


def test_tfds_builder_tiny_config_offline(tmp_path):
    tfds = pytest.importorskip("tensorflow_datasets")
    pytest.importorskip("tensorflow", reason="TFDS encodes images with TensorFlow ([tf] extra)")
    import mathart.dataset.tfds_builder  # noqa: F401  (registers "math_art")

    builder = tfds.builder("math_art/tiny", data_dir=str(tmp_path))
    builder.download_and_prepare()
    assert builder.info.splits["train"].num_examples == 8
    assert builder.info.splits["validation"].num_examples == 4
    examples = list(tfds.as_numpy(builder.as_dataset(split="validation")))
    assert len(examples) == 4
    ex = examples[0]
    assert ex["image"].shape == (R, R, 3) and ex["image"].dtype == np.uint8
    assert parse(ex["formula"].decode()).text == ex["formula"].decode()
    # The TFDS data equals build_arrays for the same config.
    arrays = build_arrays(R, "validation", 4, seed=0)
    got = sorted(e["formula"].decode() for e in examples)
    assert got == sorted(arrays["formula"].tolist())
    # tfds.load with the same data_dir reads what was prepared.
    ds = tfds.load("math_art/tiny", split="test", data_dir=str(tmp_path))
    assert sum(1 for _ in ds) == 4
