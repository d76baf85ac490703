"""Is change B faster than A? Two variants of one config's train step, timed alternately in
one process, so that both see the same machine (a shared CPU drifts by 10 % between runs).

    python benchmarks/ab_step.py --config=configs/vit.py:default \
        --a="" --b="--config.rng_impl=unsafe_rbg" [--rounds 8] [--out FILE.json]

Each variant is built as `common.bench` builds it (the loop's step, one batch of the task's
shapes, no data set) and compiled; after a warm-up, each round times one step of each (A B,
then B A in the next round), and the table gives each side's median step time and B's
speed-up over A (A's median / B's median) with the spread of the per-round ratios.
"""

import argparse
import json
import os
import shlex
import statistics
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def build(config_arg: str, overrides: list[str]):
    import jax

    from common import bench
    from common.cli import load_config

    config = load_config(config_arg, overrides)
    _, _, _, batch, built = bench.prepare(config)
    state, acc = built.init_state(), built.new_metrics()
    t0 = time.perf_counter()
    step = built.train_step.lower(state, batch, acc).compile()
    compile_s = time.perf_counter() - t0
    state, acc = step(state, batch, acc)
    jax.block_until_ready(state)
    return {"step": step, "state": state, "acc": acc, "batch": batch, "compile_s": compile_s}


def timed(side: dict) -> float:
    import jax

    t0 = time.perf_counter()
    side["state"], side["acc"] = side["step"](side["state"], side["batch"], side["acc"])
    jax.block_until_ready(side["state"])
    return time.perf_counter() - t0


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--config", required=True)
    ap.add_argument("--a", default="", help="overrides of variant A (one string)")
    ap.add_argument("--b", default="", help="overrides of variant B (one string)")
    ap.add_argument("--rounds", type=int, default=8)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--out", default="")
    args = ap.parse_args(argv)
    os.chdir(REPO)
    sys.path.insert(0, REPO)
    sides = {
        name: build(args.config, shlex.split(text)) for name, text in (("A", args.a), ("B", args.b))
    }
    for _ in range(args.warmup):
        for side in sides.values():
            timed(side)
    times = {"A": [], "B": []}
    for r in range(args.rounds):
        # A B, then B A: whichever runs second in a pair may find warmer caches.
        for name in ("A", "B") if r % 2 == 0 else ("B", "A"):
            times[name].append(timed(sides[name]))
    ratios = [a / b for a, b in zip(times["A"], times["B"])]
    record = {
        "config": args.config,
        "a": args.a,
        "b": args.b,
        "a_step_ms": statistics.median(times["A"]) * 1e3,
        "b_step_ms": statistics.median(times["B"]) * 1e3,
        "speedup_b_over_a": statistics.median(times["A"]) / statistics.median(times["B"]),
        "round_ratios": ratios,
        "a_compile_s": sides["A"]["compile_s"],
        "b_compile_s": sides["B"]["compile_s"],
        "xla_flags": os.environ.get("XLA_FLAGS", ""),
    }
    print(
        f"A [{args.a}] {record['a_step_ms']:.0f} ms (compile {record['a_compile_s']:.1f} s) | "
        f"B [{args.b}] {record['b_step_ms']:.0f} ms (compile {record['b_compile_s']:.1f} s) | "
        f"B is {record['speedup_b_over_a']:.3f}x A (rounds {min(ratios):.3f}-{max(ratios):.3f})"
    )
    if args.out:
        os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
        with open(args.out, "w") as f:
            json.dump(record, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
