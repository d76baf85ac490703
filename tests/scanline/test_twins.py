"""scanline.twins: counterfactual double-tip twins reproduce the dataset and measure the ghost."""

import numpy as np

from scanline import input_pipeline, synth, twins

CLASS3 = (0.0, 0.0, 0.0, 1.0)  # every image a defect: about 20 % of them double tips


def test_twins_are_the_dataset_images_and_differ_only_by_the_ghost():
    n, seed = 70, 3  # two chunks
    data = synth.generate(n, seed, shares=CLASS3, size=32)
    t = twins.double_tip_twins(n, seed, shares=CLASS3, size=32)
    assert len(t["index"]) > 0
    np.testing.assert_array_equal(data["subtype"][t["index"]], 6)
    np.testing.assert_array_equal(
        t["image"], input_pipeline.zscore_lines(data["images"][t["index"]])
    )
    assert np.all(t["sigma"] > 0)
    assert np.all(t["d_prime"] >= 0) and np.any(t["d_prime"] > 0)


def test_a_ghost_that_sits_on_the_apex_below_it_is_invisible():
    # max(z, z(r + 0) - delta) = z: the ghost adds nothing, so image == twin and d' = 0.
    n, seed = 64, 5
    overrides = {
        "ghost_dx": np.zeros(n),
        "ghost_dy": np.zeros(n),
        "ghost_max": np.ones(n, bool),
        "ghost_delta": np.full(n, 0.5),
    }
    t = twins.double_tip_twins(n, seed, shares=CLASS3, size=32, overrides=overrides)
    np.testing.assert_array_equal(t["image"], t["twin"])
    np.testing.assert_array_equal(t["d_prime"], 0.0)
    np.testing.assert_array_equal(t["visible_fraction"], 0.0)


def test_summary_bands_and_recall():
    t = {"d_prime": np.array([0.5, 0.7, 2.0, 50.0]), "visible_fraction": np.zeros(4)}
    preds = np.array([1, 3, 3, 3])
    twin_preds = np.array([1, 1, 2, 3])
    s = twins.summarize(t, preds, twin_preds)
    assert s["share_d_prime_below_1"] == 0.5
    assert s["by_d_prime"]["0-1"] == {"n": 2, "recall": 0.5, "same_class_as_twin": 0.5}
    assert s["by_d_prime"]["1-3"] == {"n": 1, "recall": 1.0, "same_class_as_twin": 0.0}
    assert s["by_d_prime"]["3-10"] == {"n": 0}
    assert s["by_d_prime"]["30-inf"]["recall"] == 1.0
