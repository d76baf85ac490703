"""Where a train step's time goes: the compiled step traced with `jax.profiler`, its XLA ops
summed by name (and by kind: dots, convolutions, random bits, fusions, ...).

    python benchmarks/profile_step.py --config=configs/vit.py:default [--steps 3] [--top 25]
        [--out runs/bench/profile_vit_default.json] [--config.rng_impl=unsafe_rbg ...]

Builds exactly what `common.bench` times (the loop's step on one batch of the task's shapes,
no data set), runs warm-up steps, then traces `--steps` steps. On XLA:CPU every thunk (a
fusion, a dot, a custom call) is one trace event on the compute threads; their durations,
summed over threads, are divided by the steps traced, so with 2 threads the per-step total
exceeds the wall time when both work. Prints the top ops and the share per kind; writes JSON.
"""

import argparse
import collections
import json
import os
import re
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# What an op does, from the HLO it runs (a fusion: the ops of its fused computation), first
# match wins. Threefry is plain integer arithmetic (xor, shifts, adds on u32) in fusions.
KINDS = (
    ("dot / matmul", r" dot\(|custom-call\(.*(matmul|onednn)"),
    ("convolution", r" convolution\("),
    ("random bits (threefry)", r"u32\[[^\]]*\](\{[^}]*\})? (xor|shift-left|shift-right-logical)\("),
    ("random bits (rbg)", r"rng-bit-generator|rng-get-and-update-state"),
    ("gelu / erf", r" erf\("),
    ("softmax / exp", r" exponential\("),
    ("reduce", r" reduce\(|reduce-window\("),
    ("scatter / gather / dynamic slice", r"scatter\(|gather\(|dynamic-(update-)?slice\("),
    ("copy / transpose", r" (copy|transpose)\("),
    ("elementwise", r"."),
)
_COMPUTATION = re.compile(r"^(?:ENTRY )?%?([\w.\-]+) [^\n]*\{\n(.*?)^\}", re.M | re.S)
_INSTRUCTION = re.compile(r"^\s*(?:ROOT )?%?([\w.\-]+) = (.*)$", re.M)
_CALLS = re.compile(r"calls=%?([\w.\-]+)")


def op_bodies(hlo_text: str) -> dict[str, str]:
    """Instruction name -> the HLO it runs (its own line, plus the fused computation's body
    for a fusion), from the compiled module's text."""
    computations = {m.group(1): m.group(2) for m in _COMPUTATION.finditer(hlo_text)}
    bodies = {}
    for m in _INSTRUCTION.finditer(hlo_text):
        name, line = m.group(1), m.group(2)
        called = _CALLS.search(line)
        body = computations.get(called.group(1), "") if called else ""
        bodies[name] = " " + line + "\n" + body
    return bodies


def kind_of(name: str, bodies: dict[str, str]) -> str:
    body = bodies.get(name)
    if body is None:
        return "runtime (waits, launches)"
    for kind, pattern in KINDS:
        if re.search(pattern, body):
            return kind
    return "elementwise"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--config", required=True)
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--top", type=int, default=25)
    ap.add_argument("--out", default="")
    args, overrides = ap.parse_known_args(argv)
    os.chdir(REPO)
    sys.path.insert(0, REPO)
    os.environ["XLA_FLAGS"] = (
        os.environ.get("XLA_FLAGS", "") + " --xla_cpu_enable_xprof_traceme=true"
    ).strip()
    import jax
    from jax._src import profiler as jax_profiler

    from common import bench
    from common.cli import load_config

    config = load_config(args.config, overrides)
    _, _, _, batch, built = bench.prepare(config)
    state, acc = built.init_state(), built.new_metrics()
    step = built.train_step.lower(state, batch, acc).compile()
    bodies = op_bodies(step.as_text())
    for _ in range(args.warmup):
        state, acc = step(state, batch, acc)
    jax.block_until_ready(state)
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        with jax.profiler.trace(tmp):
            for _ in range(args.steps):
                state, acc = step(state, batch, acc)
            jax.block_until_ready(state)
        wall = (time.perf_counter() - t0) / args.steps
        paths = [
            os.path.join(root, f)
            for root, _, files in os.walk(tmp)
            for f in files
            if f.endswith(".xplane.pb")
        ]
        data = jax_profiler.ProfileData.from_file(paths[0])
    by_name: dict[str, float] = collections.defaultdict(float)
    counts: dict[str, int] = collections.Counter()
    for plane in data.planes:
        if not plane.name.startswith("/host:"):
            continue
        for line in plane.lines:
            for event in line.events:
                name = event.name
                if name.startswith(("PjRt", "Thunk", "ThunkExecutor", "$", "jit_", "pjit")):
                    continue
                by_name[name] += event.duration_ns / 1e6 / args.steps
                counts[name] += 1
    total = sum(by_name.values())
    top = sorted(by_name.items(), key=lambda kv: -kv[1])
    kinds: dict[str, float] = collections.defaultdict(float)
    for name, ms in by_name.items():
        kinds[kind_of(name, bodies)] += ms
    print(
        f"{args.config} {' '.join(overrides)}: wall {wall * 1e3:.0f} ms/step, "
        f"op time {total:.0f} ms/step summed over threads"
    )
    for kind, ms in sorted(kinds.items(), key=lambda kv: -kv[1]):
        print(f"  {kind:24s} {ms:8.1f} ms  {ms / total:6.1%}")
    print(f"top {args.top} ops:")
    for name, ms in top[: args.top]:
        what = kind_of(name, bodies)
        print(
            f"  {ms:8.1f} ms {ms / total:6.1%}  x{counts[name] // args.steps:<4d} "
            f"{name[:40]:40s} {what}"
        )
    record = {
        "config": args.config,
        "overrides": overrides,
        "wall_ms_per_step": wall * 1e3,
        "op_ms_per_step": total,
        "by_kind_ms": dict(kinds),
        "top_ops_ms": dict(top[:200]),
        "xla_flags": os.environ["XLA_FLAGS"],
    }
    if args.out:
        os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
        with open(args.out, "w") as f:
            json.dump(record, f, indent=2)
        print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
