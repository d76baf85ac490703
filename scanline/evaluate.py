"""Evaluate a trained run's checkpoint on a data file, with a per-subtype breakdown.

    python -m scanline.evaluate RUN_DIR --data FILE.npz [--which best|latest|STEP] [--hflip_tta]
        [--out report.json]

Loads the run's config and params (`common.checkpoint.load_run`), reads FILE with the run's
loader settings, applies the same per-line z-score, and prints accuracy, balanced accuracy,
macro AUROC, per-class recall, the confusion matrix and, for files from `scanline.synth`
(which carry `subtype` and `scan_size_nm`), recall per generator subtype and per scan-size band:
which physical situations the model gets wrong. Uses the run's model at float32.
"""

import argparse
import itertools
import json
import sys
from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np

from common import stats
from common.checkpoint import load_run
from common.cli import add_run_arguments, handles_user_errors, run_arguments
from common.data import fixed_size_chunks
from scanline import input_pipeline, levelling, loaders
from scanline import model as model_lib


def predict(
    config, params, images: np.ndarray, batch: int = 256, *, hflip_tta: bool = False
) -> np.ndarray:
    """Probabilities at the last read-out, float64 [N, K], for z-scored images [N, T, L].

    With `hflip_tta`, the mean of the probabilities for each image and its mirror along the
    scan line (the retrace direction, which the training augmentation already shows the model).
    """
    num_classes = int(params["head"]["kernel"].shape[-1])
    model = model_lib.build_model(config.model, num_classes, jnp.float32)

    def probs(p, x):
        return jax.nn.softmax(model.apply({"params": p}, x, train=False)[:, -1])

    apply = jax.jit(
        (lambda p, x: (probs(p, x) + probs(p, x[..., ::-1])) / 2) if hflip_tta else probs
    )
    out = [
        np.asarray(apply(params, jnp.asarray(images[idx])), np.float64)[:real]
        for idx, real in fixed_size_chunks(len(images), batch)
    ]
    return np.concatenate(out)


def report(config, params, path: str, *, hflip_tta: bool = False) -> dict:
    d = config.data
    data = loaders.load_file(
        path,
        fmt=d.format,
        line_length=int(d.line_length),
        lines_per_image=d.lines_per_image,
        class_names=tuple(d.class_names) or None,
        line_label_rule=d.line_label_rule,
    )
    images = levelling.level_in_chunks(data.images, levelling.check_steps(d.get("levelling", ())))
    if d.normalize == "per_line":
        images = input_pipeline.zscore_lines(images, float(d.eps))
    probs = predict(config, params, images, hflip_tta=hflip_tta)
    k = probs.shape[1]
    preds = probs.argmax(1)
    cm = stats.confusion_matrix(data.labels, preds, k)
    auroc, per_class_auroc = stats.macro_ovr_auroc(data.labels, probs)
    out = {
        "file": path,
        "hflip_tta": hflip_tta,
        "num_examples": len(preds),
        "accuracy": float(np.trace(cm) / cm.sum()),
        "balanced_accuracy": stats.balanced_accuracy(cm),
        "auroc": auroc,
        "per_class": {
            name: {"recall": float(r), "auroc": float(a)}
            for name, r, a in zip(data.class_names, stats.per_class_recall(cm), per_class_auroc)
        },
        "confusion_matrix": cm.tolist(),
    }
    with np.load(path, allow_pickle=False) if path.endswith(".npz") else _NoExtras() as f:
        if "subtype" in f and "subtype_names" in f:
            sub, names = f["subtype"], [str(n) for n in f["subtype_names"]]
            out["recall_by_subtype"] = {
                names[s]: {
                    "n": int((sub == s).sum()),
                    "recall": float((preds[sub == s] == data.labels[sub == s]).mean()),
                    "predicted_as": np.bincount(preds[sub == s], minlength=k).tolist(),
                }
                for s in np.unique(sub)
            }
        if "scan_size_nm" in f:
            size = f["scan_size_nm"]
            bands = [3, 5, 8, 12, 18, 30.01]
            out["recall_by_scan_size_nm"] = {
                f"{lo:g}-{hi:g}": stats.balanced_accuracy(
                    stats.confusion_matrix(
                        data.labels[(size >= lo) & (size < hi)],
                        preds[(size >= lo) & (size < hi)],
                        k,
                    )
                )
                for lo, hi in itertools.pairwise(bands)
            }
    return out


class _NoExtras(dict):
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


@handles_user_errors
def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m scanline.evaluate", description=__doc__)
    add_run_arguments(parser)
    parser.add_argument("--data", required=True, help="NPZ or MAT/HDF5 file to evaluate on")
    parser.add_argument(
        "--hflip_tta",
        action="store_true",
        help="average each image's probabilities with its mirror along the line",
    )
    parser.add_argument("--out", help="write the report as JSON here")
    args = parser.parse_args(argv)
    run_dir, which = run_arguments(parser, args)
    run = load_run(run_dir, which)
    rep = {
        "run": run_dir,
        "checkpoint_step": run.step,
        **report(run.config, run.params, args.data, hflip_tta=args.hflip_tta),
    }
    write_report(rep, args.out)


def write_report(report: dict, out: str | None) -> None:
    """Prints a JSON report to stdout and, when `out` is given, writes it there too."""
    text = json.dumps(report, indent=1)
    if out:
        with open(out, "w") as f:
            f.write(text)
    print(text, file=sys.stdout)


if __name__ == "__main__":
    main()
