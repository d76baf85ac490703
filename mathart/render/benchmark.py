"""Render throughput: images per second for the dataset's formula mix.

    python -m mathart.render.benchmark --sizes 32,128 --num 256
    python -m mathart.render.benchmark --sizes 512 --num 64 --json bench.json

Samples ``--num`` formulas with the dataset sampler (all families, the 40/35/25 complexity
mix) and a style each, renders them once (compiles, timed separately), then renders them
``--repeats`` more times and reports the median images/s, per form as well. Compile time is
never mixed into the throughput figure. On a shared machine, run it under the CPU lock:
``flock /tmp/jaxfam_cpu.lock python -m mathart.render.benchmark ...``.
"""

import argparse
import collections
import json
import platform
import time

import jax
import numpy as np

from mathart.formula import parse
from mathart.render.renderer import render
from mathart.render.style import Style


def _timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def run(sizes: list[int], num: int, repeats: int, seed: int, max_batch: int) -> dict:
    from mathart.dataset import families  # the sampler lives with the dataset

    samples = [families.sample(np.random.default_rng([seed, j])) for j in range(num)]
    formulas = [parse(text) for text, _, _ in samples]
    styles = [Style.from_seed(seed * 100_003 + j) for j in range(num)]
    by_form = collections.defaultdict(list)
    for j, f in enumerate(formulas):
        by_form[f.form].append(j)
    results = {
        "device": str(jax.devices()[0]),
        "platform": platform.platform(),
        "jax": jax.__version__,
        "num_formulas": num,
        "sizes": {},
    }

    def go(idx: list[int], size: int, pad: bool) -> None:
        render(
            [formulas[j] for j in idx],
            size,
            [styles[j] for j in idx],
            max_batch=max_batch,
            pad_to_max_batch=pad,
        )

    everything = list(range(num))
    for size in sizes:
        first = _timed(lambda: go(everything, size, True))  # noqa: B023 (called right here)
        times = [_timed(lambda: go(everything, size, True)) for _ in range(repeats)]  # noqa: B023
        per_form = {}
        for form, idx in sorted(by_form.items()):
            go(idx, size, False)  # warm-up: this group's batch shapes compile here
            t = [_timed(lambda: go(idx, size, False)) for _ in range(repeats)]  # noqa: B023
            per_form[form] = {"count": len(idx), "images_per_s": len(idx) / float(np.median(t))}
        results["sizes"][str(size)] = {
            "first_call_s (compile + render)": first,
            "images_per_s": num / float(np.median(times)),
            "per_form": per_form,
        }
    return results


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="32,128", help="comma-separated resolutions")
    parser.add_argument("--num", type=int, default=256, help="formulas per measurement")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--max_batch", type=int, default=16, help="images per drawing call")
    parser.add_argument("--json", default=None, help="also write the results here")
    args = parser.parse_args(argv)
    sizes = [int(s) for s in args.sizes.split(",") if s]
    results = run(sizes, args.num, args.repeats, args.seed, args.max_batch)
    print(f"device: {results['device']}  jax {results['jax']}  formulas: {args.num}")
    for size, r in results["sizes"].items():
        print(
            f"{size:>5} px: {r['images_per_s']:8.1f} images/s "
            f"(first call incl. compile {r['first_call_s (compile + render)']:.1f} s)"
        )
        for form, f in r["per_form"].items():
            print(f"        {form:<11} {f['count']:4d} formulas {f['images_per_s']:8.1f} images/s")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=2)


if __name__ == "__main__":
    main()
