"""How visible is a double tip? Counterfactual twins from the synthetic generator.

    python -m scanline.twins --n 4000 --seed 1 [--run RUN_DIR --which best] [--out twins.json]

A double-tip image of `scanline.synth` is a good tip's scan with a ghost copy of the surface
added (by max or by blend). Its *twin* is the same image rendered with the ghost switched off:
same surface, same tip, same noise draws (the ghost consumes no random numbers), so the
difference between the two is exactly what the double tip adds. Both are per-line z-scored as
the model sees them, and for every double-tip image we report

* ``d_prime`` = ||z(image) - z(twin)|| / sigma: the separation of the two hypotheses for an
  ideal observer that knows the surface, the tip and everything but the noise. sigma is the
  per-pixel noise of the same image, measured by rendering it again with another noise stream
  (RMS of the difference / sqrt 2). The noise is not white (AR(1) along the line, line jitter),
  so this is an approximate, optimistic figure: a real classifier knows neither the surface nor
  the twin. An image with d' < 1 cannot be told from its ghost-free twin even by that observer,
  so it is a class-3 image that looks like a good tip (classes 0-2): an error no model avoids;
* ``visible_fraction``: share of pixels where the ghost changes the image by more than sigma.

With ``--run``, the run's model (float32, its last read-out) also classifies each double-tip
image and its twin, and recall is reported per d' band, with how often the model gives the
image the same class as its ghost-free twin (it did not react to the ghost). If recall stays low
where d' is large, the model, not the generator, is what falls short.
"""

import argparse
import itertools
from collections.abc import Sequence

import numpy as np

from common.checkpoint import load_run
from scanline import input_pipeline, synth
from scanline.evaluate import predict, write_report

D_PRIME_BANDS = (0.0, 1.0, 3.0, 10.0, 30.0, np.inf)


def double_tip_twins(
    n: int,
    seed: int,
    *,
    shares: Sequence[float] = synth.DEFAULT_SHARES,
    size: int = 128,
    eps: float = 1e-8,
    overrides: dict[str, np.ndarray] | None = None,
) -> dict[str, np.ndarray]:
    """Renders every double-tip image of the dataset `synth.generate(n, seed, shares)` with its
    ghost-free twin and a re-noised copy, all per-line z-scored.

    `overrides` replaces per-image generator parameters (arrays of length n) before rendering:
    for tests. Returns ``index`` [M] (positions in the dataset), ``image``, ``twin`` [M, S, S],
    ``sigma``, ``d_prime``, ``visible_fraction`` [M].
    """
    p = synth.sample_parameters(n, seed, shares, copies=1)
    defects = p.pop("defects")
    for key, value in (overrides or {}).items():
        if key not in p:
            raise KeyError(f"unknown generator parameter '{key}'")
        p[key] = np.asarray(value, p[key].dtype)
    out: dict[str, list] = {"index": [], "image": [], "twin": [], "renoised": []}
    for c, idx in enumerate(synth.chunk_slices(n)):
        local = np.nonzero(p["ghost"][idx])[0]
        if not len(local):
            continue
        params = synth.select_images(p, idx)
        no_ghost = {**params, "ghost": np.zeros_like(params["ghost"])}
        out["index"].append(idx[local])
        # Image and twin must share the chunk's noise draws, so both render the whole chunk.
        out["image"].append(synth.render_dataset_chunk(params, defects, size, seed, c)[local])
        out["twin"].append(synth.render_dataset_chunk(no_ghost, defects, size, seed, c)[local])
        # Other noise for the same images (their difference is noise only): these images alone.
        doubles = synth.select_images(params, local)
        out["renoised"].append(
            synth.render_dataset_chunk(doubles, defects, size, seed, c, noise_stream=1)
        )
    if not out["index"]:
        raise ValueError(f"the dataset (n={n}, seed={seed}) has no double-tip images; raise --n")
    res = {k: np.concatenate(v) for k, v in out.items()}
    image, twin, renoised = (
        input_pipeline.zscore_lines(res.pop(k), eps) for k in ("image", "twin", "renoised")
    )
    flat = lambda a: a.reshape(len(a), -1).astype(np.float64)
    sigma = np.sqrt(np.mean((flat(image) - flat(renoised)) ** 2, axis=1) / 2)
    delta = flat(image) - flat(twin)
    return {
        "index": res["index"],
        "image": image,
        "twin": twin,
        "sigma": sigma,
        "d_prime": np.linalg.norm(delta, axis=1) / sigma,
        "visible_fraction": np.mean(np.abs(delta) > sigma[:, None], axis=1),
    }


def summarize(twins: dict[str, np.ndarray], preds=None, twin_preds=None, label: int = 3) -> dict:
    """Distribution of d' (and, given predictions, recall per d' band) as a JSON-able dict."""
    d = twins["d_prime"]
    out = {
        "num_double_tips": len(d),
        "d_prime_quantiles": {f"p{q}": float(np.percentile(d, q)) for q in (5, 10, 25, 50, 75, 90)},
        "share_d_prime_below_1": float(np.mean(d < 1)),
        "share_d_prime_below_3": float(np.mean(d < 3)),
        "visible_fraction_median": float(np.median(twins["visible_fraction"])),
    }
    bands = {}
    for lo, hi in itertools.pairwise(D_PRIME_BANDS):
        sel = (d >= lo) & (d < hi)
        band = {"n": int(sel.sum())}
        if preds is not None and sel.any():
            band["recall"] = float(np.mean(preds[sel] == label))
            band["same_class_as_twin"] = float(np.mean(preds[sel] == twin_preds[sel]))
        bands[f"{lo:g}-{hi:g}"] = band
    out["by_d_prime"] = bands
    return out


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m scanline.twins", description=__doc__)
    parser.add_argument("--n", type=int, default=4000, help="images in the dataset")
    parser.add_argument("--seed", type=int, default=1, help="generator seed (1 = the test file)")
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--run", help="a trained run directory: also classify the twins")
    parser.add_argument("--which", default="best", choices=("best", "latest"))
    parser.add_argument("--out", help="write the summary as JSON here")
    args = parser.parse_args(argv)
    twins = double_tip_twins(args.n, args.seed, size=args.size)
    preds = twin_preds = None
    if args.run:
        run = load_run(args.run, args.which)
        both = np.concatenate([twins["image"], twins["twin"]])  # one compiled function
        preds, twin_preds = np.split(predict(run.config, run.params, both).argmax(1), 2)
    summary = {"n": args.n, "seed": args.seed, "run": args.run}
    summary.update(summarize(twins, preds, twin_preds))
    write_report(summary, args.out)


if __name__ == "__main__":
    main()
