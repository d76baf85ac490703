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
from vit import augment, losses, mixing
from vit.task import repeat_examples


def benchmark(config, steps: int = 20) -> dict:
    aug = config.augment
    b = int(config.batch_size)
    rng = np.random.default_rng(0)
    batch = {
        "image": jax.device_put(rng.integers(0, 256, (b, 32, 32, 3), dtype=np.uint8)),
        "label": jax.device_put(rng.integers(0, 10, b).astype(np.int32)),
    }

    @jax.jit
    def augment_batch(key, batch):
        k_aug, k_mix = jax.random.split(key)
        batch = repeat_examples(batch, int(aug.repeated_aug))
        images = augment.train_images(k_aug, batch["image"], aug)
        targets = losses.smooth_labels(batch["label"], 10, float(config.label_smoothing))
        return mixing.mix_batch(
            k_mix,
            images,
            targets,
            mixup_alpha=float(aug.mixup_alpha),
            cutmix_alpha=float(aug.cutmix_alpha),
            mix_prob=float(aug.mix_prob),
            switch_prob=float(aug.switch_prob),
        )

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
        "policy": aug.policy,
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
