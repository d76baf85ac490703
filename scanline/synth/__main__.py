"""`python -m scanline.synth`: write a synthetic dataset as NPZ."""

import argparse
import os
import sys
import time
from collections.abc import Sequence

import numpy as np

from scanline import synth
from scanline.synth.dataset import generate, write_npz
from scanline.synth.parameters import DEFAULT_SHARES
from scanline.synth.sessions import generate_sessions


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m scanline.synth", description=synth.__doc__.split("\n\n")[0]
    )
    parser.add_argument("--out", required=True, help="output .npz path")
    parser.add_argument("--n", type=int, required=True, help="number of images")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--size", type=int, default=128, help="pixels per line and lines per image")
    parser.add_argument("--copies", type=int, default=1, help="images per source surface (groups)")
    parser.add_argument(
        "--shares", type=float, nargs=4, default=list(DEFAULT_SHARES), help="class shares"
    )
    parser.add_argument(
        "--sessions",
        type=int,
        default=0,
        help="a stand-in for a group's own scans: this many sessions of uneven sizes and class "
        "mixes on a shifted instrument (scanline/synth/sessions.py); groups = sessions",
    )
    parser.add_argument("--workers", type=int, default=min(2, os.cpu_count() or 1))
    args = parser.parse_args(argv)
    if not args.out.endswith(".npz"):
        parser.error(f"--out must end in .npz, got '{args.out}'")
    if args.sessions and args.copies != 1:
        parser.error("--sessions and --copies: choose one grouping")
    t0 = time.perf_counter()
    if args.sessions:
        data = generate_sessions(
            args.n,
            args.sessions,
            args.seed,
            size=args.size,
            shares=args.shares,
            workers=args.workers,
        )
    else:
        data = generate(
            args.n,
            args.seed,
            shares=args.shares,
            copies=args.copies,
            size=args.size,
            workers=args.workers,
        )
    write_npz(args.out, data)
    counts = np.bincount(data["labels"], minlength=4)
    print(
        f"wrote {args.out}: {args.n} images {args.size}x{args.size}, class counts "
        f"{counts.tolist()}, {len(np.unique(data['groups']))} "
        f"{'sessions' if args.sessions else 'sources'}, "
        f"{time.perf_counter() - t0:.1f} s",
        file=sys.stderr,
    )


if __name__ == "__main__":
    main()
