"""Input-side benchmark of the ViT family: the on-device augmentation alone.

    python -m vit.bench_augment --config=configs/vit.py:strong [--steps=20]

The host side of the input pipeline (slicing in-memory arrays, device placement) is timed by
``python -m common.bench --input_batches=N``; the augmentation runs inside the compiled train
step, so `common.bench`'s step time already includes it. This tool times it separately (the
jitted crop/flip/policy/erasing + Mixup/CutMix of one global batch of random uint8 images) to
show what share of the step it costs. Prints one JSON line.
"""

import argparse
import json
import statistics
import sys
import time

import jax
import numpy as np

from common.cli import load_config_file
from vit.task import VitTask


def benchmark(config, steps: int = 20) -> dict:
    b = int(config.batch_size)
    rng = np.random.default_rng(0)
    batch = {
        "image": jax.device_put(rng.integers(0, 256, (b, 32, 32, 3), dtype=np.uint8)),
        "label": jax.device_put(rng.integers(0, 10, b).astype(np.int32)),
    }

    task = VitTask(config)
    # The task's own augmentation (what the train step runs), timed alone.
    augment_batch = jax.jit(lambda k, batch: task.augment_batch(*jax.random.split(k), batch)[1:])

    t0 = time.perf_counter()
    compiled = augment_batch.lower(jax.random.key(0), batch).compile()
    compile_s = time.perf_counter() - t0
    jax.block_until_ready(compiled(jax.random.key(1), batch))
    times = []
    for i in range(steps):
        t0 = time.perf_counter()
        jax.block_until_ready(compiled(jax.random.key(i + 2), batch))
        times.append(time.perf_counter() - t0)
    ms = statistics.median(times) * 1e3
    return {
        "profile": config.profile,
        "policy": config.augment.policy,
        "device_kind": jax.devices()[0].device_kind,
        "global_batch": b,
        "compile_s": round(compile_s, 2),
        "augment_ms_per_batch": round(ms, 2),
        "augment_examples_per_sec": round(b / ms * 1e3, 1),
    }


def main(argv: list[str]) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", default="configs/vit.py", help="configs/vit.py[:profile]")
    ap.add_argument("--steps", type=int, default=20, help="timed batches (median reported)")
    args = ap.parse_args(argv)
    print(json.dumps(benchmark(load_config_file(args.config), args.steps)))


if __name__ == "__main__":
    main(sys.argv[1:])
