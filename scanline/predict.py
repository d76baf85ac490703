"""Which of today's scans had a good tip? Triage a folder of scans with a trained run.

    python -m scanline.predict RUN_DIR --scans DIR_OR_FILES... [--out results.csv]
                               [--which best|latest|STEP] [--batch 64]

Reads every scan (the readers, channel, direction, size and levelling of the run's config:
`scanline.instruments`, `scanline.levelling`), classifies it with the run's model
(`common.load_run(RUN_DIR).predict`, the loop's own preprocessing) and writes:

- a CSV, one row per scan: file, predicted class, its probability, every class's probability,
  and for models that read out along the scan (sequential, LRCN) the class predicted after the
  first k lines for each read-out, and ``known_after_lines``: from how many lines on the
  prediction no longer changes (how early in the scan the tip state is known);
- a one-page PNG contact sheet beside it (``<out>_sheet.png``): the scans sorted by predicted
  class, each captioned with its class and probability.

Unreadable files are listed and skipped; they never stop the others. A progress bar shows on a
terminal.
"""

import argparse
import csv
import logging
import os
import sys

import numpy as np

from common.cli import add_run_arguments, handles_user_errors, run_arguments
from common.metrics import ProgressBar
from scanline import instruments
from scanline import model as model_lib
from scanline.loaders import DataFormatError

SHEET_COLUMNS = 8
SHEET_MAX = 96  # scans on the one page; the CSV has them all


def scan_files(inputs: list[str], channel: str = "") -> list[str]:
    """Every scan file named, or found (sorted) in a named folder (`instruments.is_scan_file`:
    for MATRIX, the result files of `channel`)."""
    files = []
    for item in inputs:
        if os.path.isdir(item):
            names = sorted(f for f in os.listdir(item) if instruments.is_scan_file(f, channel))
            files += [os.path.join(item, f) for f in names]
        else:
            files.append(item)
    return files


def read_all(files, config, bar: ProgressBar) -> tuple[list[str], np.ndarray, list[str]]:
    """(files read, scans [N, size, size], 'file (why)' for each skipped one)."""
    d, size = config.data, int(config.data.line_length)
    instruments.check_direction(d.direction)
    read, scans, skipped = [], [], []
    for n, path in enumerate(files, 1):
        try:
            scan = instruments.read_scan(path, channel=d.channel, direction=d.direction)
            scans.append(instruments.resample(scan, size))
            read.append(path)
        except (OSError, ImportError, DataFormatError, ValueError) as e:
            skipped.append(f"{path} ({e})")
        bar.update(n, None)
    bar.clear()
    stacked = np.stack(scans).astype(np.float32) if scans else np.zeros((0, size, size))
    return read, stacked, skipped


def known_after(by_readout: np.ndarray, lines_seen: np.ndarray) -> np.ndarray:
    """Per scan, the lines seen by the first read-out from which the predicted class stays
    the final one ([N] ints; the whole scan for single read-out models)."""
    predicted = by_readout.argmax(-1)  # [N, P]
    stays = np.flip(np.cumprod(np.flip(predicted == predicted[:, -1:], 1), 1), 1)  # [N, P]
    first = np.argmax(stays, axis=1)
    return lines_seen[first]


def contact_sheet(scans, labels, probs, class_names, path: str) -> None:
    """The scans sorted by predicted class (then most confident first), captioned."""
    from PIL import Image, ImageDraw, ImageFont

    order = sorted(range(len(scans)), key=lambda i: (labels[i], -probs[i, labels[i]]))
    order = order[:SHEET_MAX]
    cell, caption, pad = 96, 14, 4
    rows = max(1, -(-len(order) // SHEET_COLUMNS))
    sheet = Image.new(
        "RGB", (SHEET_COLUMNS * (cell + pad) + pad, rows * (cell + caption + pad) + pad), "white"
    )
    draw, font = ImageDraw.Draw(sheet), ImageFont.load_default()
    for slot, i in enumerate(order):
        scan = scans[i]
        grey = (scan - scan.min()) / max(float(np.ptp(scan)), 1e-12) * 255
        thumb = Image.fromarray(grey.astype(np.uint8)).resize((cell, cell))
        r, c = divmod(slot, SHEET_COLUMNS)
        x, y = pad + c * (cell + pad), pad + r * (cell + caption + pad)
        sheet.paste(thumb.convert("RGB"), (x, y))
        text = f"{class_names[labels[i]][:11]} {probs[i, labels[i]]:.2f}"
        draw.text((x, y + cell + 1), text, fill="black", font=font)
    sheet.save(path)


@handles_user_errors
def main(argv: list[str] | None = None) -> int:
    import common

    ap = argparse.ArgumentParser(prog="python -m scanline.predict", description=__doc__)
    add_run_arguments(ap)
    ap.add_argument("--scans", nargs="+", required=True, help="folders and/or scan files")
    ap.add_argument("--out", default="predictions.csv", help="CSV path (sheet beside it)")
    ap.add_argument("--batch", type=int, default=64)
    args = ap.parse_args(argv)
    run_dir, which = run_arguments(ap, args)
    trained = common.load_run(run_dir, which)
    config = trained.config
    files = scan_files(args.scans, config.data.channel)
    if not files:
        suffixes = ", ".join(f"*{s}" for s in instruments.SCAN_SUFFIXES)
        raise DataFormatError(f"no scan files ({suffixes}) in {args.scans}")
    bar = ProgressBar(len(files))
    read, scans, skipped = read_all(files, config, bar)
    for line in skipped:
        logging.warning("skipped %s", line)
    if not read:
        raise DataFormatError(f"none of the {len(files)} files could be read: {skipped[:3]}")
    outs = [
        trained.predict({"image": scans[start : start + args.batch]})
        for start in range(0, len(scans), args.batch)
    ]
    probs = np.concatenate([o["probs"] for o in outs])
    by_readout = np.concatenate([o["probs_by_readout"] for o in outs])
    labels = probs.argmax(1)
    names = _class_names(trained, probs.shape[1])
    seen = model_lib.lines_seen(config.model, scans.shape[1])
    known = known_after(by_readout, seen)
    header = ["file", "predicted", "probability", *(f"p_{n}" for n in names)]
    if len(seen) > 1:
        header += [f"after_{k}_lines" for k in seen] + ["known_after_lines"]
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    with open(args.out, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(header)
        for i, path in enumerate(read):
            row = [path, names[labels[i]], f"{probs[i, labels[i]]:.4f}"]
            row += [f"{p:.4f}" for p in probs[i]]
            if len(seen) > 1:
                row += [names[k] for k in by_readout[i].argmax(-1)] + [int(known[i])]
            writer.writerow(row)
    sheet = os.path.splitext(args.out)[0] + "_sheet.png"
    contact_sheet(scans, labels, probs, names, sheet)
    counts = np.bincount(labels, minlength=len(names))
    print(
        f"{len(read)} scans classified ({len(skipped)} skipped): "
        + ", ".join(f"{n} {c}" for n, c in zip(names, counts.tolist()))
        + f"; wrote {args.out} and {sheet}"
    )
    return 0


def _class_names(trained, k: int) -> tuple[str, ...]:
    """The run's class names: saved with every checkpoint (`ScanlineTask.state_dict`), else
    config.data.class_names, else class_<k>."""
    saved = tuple(trained.meta.get("task_state", {}).get("class_names") or ())
    names = saved or tuple(trained.config.data.class_names)
    return names[:k] if len(names) >= k else tuple(f"class_{i}" for i in range(k))


if __name__ == "__main__":
    sys.exit(main())
