"""The synthetic generator: deterministic, right shapes and shares, groups, CLI, no easy cue."""

import numpy as np
import pytest

from scanline import synth


def test_shapes_labels_groups(tiny_synth):
    d = tiny_synth
    assert d["images"].shape == (24, 32, 32) and d["images"].dtype == np.float32
    assert np.isfinite(d["images"]).all()
    assert d["labels"].shape == (24,) and set(np.unique(d["labels"])) <= {0, 1, 2, 3}
    # 2 copies per source: 12 groups of 2, and copies share the label.
    _, counts = np.unique(d["groups"], return_counts=True)
    assert counts.tolist() == [2] * 12
    for g in np.unique(d["groups"]):
        assert len(set(d["labels"][d["groups"] == g].tolist())) == 1
    # Copies are different pictures of the same surface, not duplicates.
    a, b = d["images"][d["groups"] == 0]
    assert not np.allclose(a, b)


def test_deterministic_and_worker_invariant():
    a = synth.generate(70, seed=5, size=32)  # 2 chunks
    b = synth.generate(70, seed=5, size=32, workers=2)
    c = synth.generate(70, seed=6, size=32)
    np.testing.assert_array_equal(a["images"], b["images"])
    np.testing.assert_array_equal(a["labels"], b["labels"])
    assert not np.array_equal(a["images"], c["images"])


def test_class_shares_exact():
    p = synth.sample_parameters(10000, seed=0)
    counts = np.bincount(synth.SUBTYPE_CLASS[p["subtype"]], minlength=4)
    # Largest-remainder rounding of the (renormalised) shares: within one image of the target.
    shares = np.array(synth.DEFAULT_SHARES) / sum(synth.DEFAULT_SHARES)
    assert counts.sum() == 10000
    assert np.abs(counts - shares * 10000).max() < 1


def test_scan_size_never_determines_the_class():
    """Every scan size is shared by at least two classes, and the Bayes classifier that sees
    only the scan size (the pixel period) stays far below the task's target."""
    p = synth.sample_parameters(20000, seed=0)
    labels = synth.SUBTYPE_CLASS[p["subtype"]]
    bins = np.exp(np.linspace(np.log(3), np.log(30), 25))
    which = np.digitize(p["scan_nm"], bins)
    hits = np.zeros(4)
    for b in np.unique(which):
        in_bin = labels[which == b]
        counts = np.bincount(in_bin, minlength=4)
        assert (counts > 0).sum() >= 2, f"scan-size bin {b} holds a single class"
        # Balanced-accuracy-optimal decision: argmax of counts / class prior.
        pick = np.argmax(counts / np.bincount(labels, minlength=4))
        hits[pick] += counts[pick]
    bal = np.mean(hits / np.bincount(labels, minlength=4))
    assert bal < 0.6


def test_cli_writes_npz(tmp_path):
    out = tmp_path / "s.npz"
    from scanline.synth.__main__ import main

    main(["--out", str(out), "--n", "5", "--seed", "1", "--size", "32", "--workers", "1"])
    with np.load(out, allow_pickle=False) as f:
        assert f["images"].shape == (5, 32, 32)
        assert list(f["class_names"]) == list(synth.CLASS_NAMES)


def test_bad_arguments():
    with pytest.raises(ValueError, match="shares"):
        synth.sample_parameters(10, 0, shares=(1, 2, 3))
    with pytest.raises(ValueError, match="--n"):
        synth.sample_parameters(0, 0)


def test_instrument_scale_makes_another_microscope():
    calm = synth.generate(8, seed=3, size=32)
    noisy = synth.generate(8, seed=3, size=32, instrument_scale={"white_sigma": 10.0})
    np.testing.assert_array_equal(calm["labels"], noisy["labels"])  # same surfaces and tips
    roughness = [np.diff(d["images"], axis=2).std() for d in (calm, noisy)]
    assert roughness[1] > 2 * roughness[0]


def test_sessions_stand_in_loads_with_named_sessions(tmp_path):
    from scanline import input_pipeline, loaders
    from scanline.synth.__main__ import main
    from scanline.synth.sessions import SHIFT

    out = tmp_path / "small.npz"
    main(["--out", str(out), "--n", "40", "--sessions", "5", "--size", "32", "--workers", "1"])
    data = loaders.load_npz(str(out), line_length=32)
    assert data.group_names == tuple(f"session_{s:02d}" for s in range(5))
    sizes = np.bincount(data.groups, minlength=5)
    assert sizes.sum() == 40 and sizes.min() >= 2
    with np.load(out) as f:
        factors, keys = f["session_shift"], list(f["shift_keys"])
    assert factors.shape == (5, len(SHIFT)) and keys == sorted(SHIFT)
    for k, key in enumerate(keys):
        assert (SHIFT[key][0] <= factors[:, k]).all() and (factors[:, k] <= SHIFT[key][1]).all()
    import configs.scanline as cfgmod

    c = cfgmod.get_config("microscope")
    c.data.path, c.data.line_length = str(out), 32
    c.data.test_groups, c.data.split = ("session_03",), (0.7, 0.3, 0.0)
    summary = input_pipeline.build_datasets(c).summary
    assert summary["test"]["groups"] == ["session_03"] and summary["test"]["images"] == sizes[3]
