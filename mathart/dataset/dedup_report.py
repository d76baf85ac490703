"""How many near-duplicates each de-duplication rule would remove, from one render pass.

    python -m mathart.dataset.dedup_report --resolution 32 --num 20000

Builds the split with the perceptual filter switched off (recording every kept image's hash
and thumbnail), then replays several rules over the recorded stream in order: pHash equality
alone, pHash equality plus thumbnail thresholds (the default is 15 %), and a looser hash
distance. Prints the removed fraction over the whole stream and its first 10 %, the complexity
mix that remains, and the families hit most. Used to choose and document the default rule
(mathart/dataset/DATA.md).
"""

import argparse
import collections
import time

import numpy as np

from mathart.dataset import build as build_module
from mathart.dataset.families import FAMILIES
from mathart.dataset.phash import Deduplicator, phash, thumbnail

RULES = ((0, np.inf), (0, 0.25), (0, 0.15), (0, 0.10), (2, 0.15))


def replay(records: list, max_distance: int, max_difference: float) -> np.ndarray:
    """Which recorded images a `Deduplicator(max_distance, max_difference)` would keep."""
    dedup = Deduplicator(max_distance, max_difference)
    keep = np.zeros((len(records),), bool)
    for i, (h, thumb) in enumerate(records):
        keep[i] = not dedup.is_duplicate(h, thumb)
        if keep[i]:
            dedup.remember(h, thumb)
    return keep


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--resolution", type=int, default=32)
    parser.add_argument("--num", type=int, default=20000)
    parser.add_argument("--split", default="train")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    records: list = []

    class Recorder(Deduplicator):
        def add(self, grey: np.ndarray) -> bool:
            records.append((phash(grey), thumbnail(grey)))
            return True

    original = build_module.Deduplicator
    build_module.Deduplicator = Recorder
    try:
        start = time.perf_counter()
        arrays, stats = build_module.build_dataset(
            args.resolution, args.split, args.num, seed=args.seed
        )
    finally:
        build_module.Deduplicator = original
    print(
        f"built {args.num} {args.split} examples at {args.resolution} px in "
        f"{time.perf_counter() - start:.1f} s: {stats.candidates} candidates, "
        f"{stats.exact_duplicates} exact repeats re-drawn, {stats.blank} blank of "
        f"{stats.rendered} renders"
    )
    family, level = arrays["family"], arrays["complexity"]
    mix = np.bincount(level, minlength=3) / len(level)
    print(f"complexity mix before the perceptual filter: {np.round(100 * mix, 1).tolist()} %")
    head = max(1, len(records) // 10)
    for distance, difference in RULES:
        keep = replay(records, distance, difference)
        removed = collections.Counter(FAMILIES[f] for f in family[~keep])
        mix = np.bincount(level[keep], minlength=3) / keep.sum()
        print(
            f"pHash within {distance} bits and thumbnail < {difference}: removes "
            f"{100 * (~keep).mean():.2f} % (first {head}: {100 * (~keep[:head]).mean():.2f} %); "
            f"mix after {np.round(100 * mix, 1).tolist()} %; most hit {removed.most_common(4)}"
        )


if __name__ == "__main__":
    main()
