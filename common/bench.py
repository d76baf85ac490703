"""Benchmark the real compiled train step of any family: `python -m common.bench`.

    python -m common.bench --config=configs/vit.py:small [--config.batch_size=256]
                           [--steps=20] [--warmup=3] [--input_batches=0] [--out=FILE.json]
    python -m common.bench --config=configs/mathart.py:full512 --compile_only

Times exactly the step `common.train` runs (built by `common.steps.build_steps`) on one batch
already on device, so input is excluded: compile time (lower + compile, separately), step time
(median and spread of N timed steps after warm-up, each ended by `block_until_ready`),
examples/s, FLOPs per step from XLA's cost analysis (global, i.e. all devices) and from the
task's analytic count, MFU against the device's peak (a table for GPUs/TPUs; on CPU a measured
float32 matmul peak), memory (device peak where the runtime reports it, else XLA's buffer
sizes), and the number of compilations during timing (must be 0). `--input_batches N` also
times the task's input pipeline alone (host batches + device placement), to compare with the
step rate. `--compile_only` allocates nothing model-sized: it compiles the step on abstract
shapes and reports XLA's argument / temporary / live bytes and FLOPs, which sizes a step for a
device bigger than this one. Prints a table and writes JSON. Every speed figure in this project
comes from here.
"""

import functools
import json
import logging
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from common import environment, parallel
from common import metrics as metrics_lib
from common.precision import compute_dtype, dtype_name
from common.steps import build_steps
from common.task import Task, task_class

# Dense bf16 peak TFLOP/s per device, the datasheet figures maxtext's MFU uses (H100/H200 SXM).
PEAK_BF16_TFLOPS = {
    "h100": 989.0,
    "h200": 989.0,
    "a100": 312.0,
    "tpu v4": 275.0,
    "tpu v5 lite": 197.0,
    "tpu v5e": 197.0,
    "tpu v5p": 459.0,
    "tpu v5": 459.0,
    "tpu v6 lite": 918.0,
    "tpu v6e": 918.0,
}


def device_peak_flops(dtype) -> tuple[float, str]:
    """(peak FLOP/s per device, where the number comes from)."""
    device = jax.devices()[0]
    kind = device.device_kind.lower()
    if device.platform in ("gpu", "tpu"):
        for name, tflops in PEAK_BF16_TFLOPS.items():
            if name in kind:
                scale = 1.0 if jnp.dtype(dtype) == jnp.bfloat16 else 0.5  # rough f32 (TF32) peak
                return tflops * 1e12 * scale, f"table: {name} dense bf16 {tflops} TFLOP/s"
        return float("nan"), f"no peak known for '{device.device_kind}'"
    return measure_matmul_peak(), "measured: float32 2048x2048 matmul on one CPU device"


def measure_matmul_peak(n: int = 2048, repeats: int = 5) -> float:
    """Best-of-N float32 matmul FLOP/s on the first device: the CPU's practical peak."""
    a = jax.device_put(jnp.ones((n, n), jnp.float32), jax.devices()[0])
    f = jax.jit(lambda x: x @ x)
    f(a).block_until_ready()
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        f(a).block_until_ready()
        best = min(best, time.perf_counter() - t0)
    return 2.0 * n**3 / best


def example_batch(
    task: Task, config: ml_collections.ConfigDict, global_batch: int, datasets: Callable
) -> dict:
    """A full global batch: the task's synthetic one if it offers it, else real data."""
    batch = task.synthetic_batch(global_batch, np.random.default_rng(0))
    if batch is not None:
        return {k: np.asarray(v) for k, v in batch.items()}
    data = datasets()
    return next(
        data.train.batches(
            epoch=0, start_step=0, global_batch_size=global_batch, process_index=0, process_count=1
        )
    )


def time_input(
    datasets: Callable, config, mesh, num_batches: int, stacked: bool
) -> dict[str, float]:
    """Host input pipeline + device placement alone, in examples/s."""
    data = datasets()
    batches = data.train.batches(
        epoch=0,
        start_step=0,
        global_batch_size=config.batch_size,
        process_index=0,
        process_count=1,
    )
    t0, n = time.perf_counter(), 0
    for batch in batches:
        placed = parallel.place_batch(batch, mesh, stacked=stacked)
        jax.block_until_ready(placed)
        n += 1
        if n >= num_batches:
            break
    dt = time.perf_counter() - t0
    return {"input_batches": n, "input_examples_per_sec": n * config.batch_size / dt}


def prepare(config: ml_collections.ConfigDict):
    """Task, mesh, the task's datasets (built at most once), one full batch placed on the
    devices, and the loop's steps for `config`: what the timed and the compile-only
    benchmark start from, and benchmarks/ (profile, A/B) too, so that every tool times the
    same step."""
    task = task_class(config)(config)
    mesh = parallel.make_mesh(config.get("num_devices"))
    parallel.per_device_batch(int(config.batch_size), mesh)
    datasets = functools.cache(task.datasets)
    host_batch = example_batch(task, config, int(config.batch_size), datasets)
    small = {k: np.asarray(v)[:2] for k, v in host_batch.items()}
    built = build_steps(task, config, mesh, small, steps_per_epoch=1000, total_steps=10**6)
    batch = parallel.place_batch(host_batch, mesh, stacked=built.stacked)
    return task, mesh, datasets, batch, built


def _compile(built, state, batch, acc):
    """(lowered, compiled, lower seconds, compile seconds) of the loop's train step."""
    t0 = time.perf_counter()
    lowered = built.train_step.lower(state, batch, acc)
    lower_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    compiled = lowered.compile()
    return lowered, compiled, lower_s, time.perf_counter() - t0


def _describe(config, task, mesh, state, lowered, compiled, lower_s, compile_s) -> dict:
    """The fields every bench record has: what ran, where, its size, FLOPs and XLA memory."""
    per_example = task.flops_per_example()
    global_batch = int(config.batch_size)
    memory = compiled.memory_analysis()
    sizes = {
        f"xla_{k}_bytes": getattr(memory, f"{k}_size_in_bytes", None)
        for k in ("argument", "output", "alias", "temp")
    }
    live = None
    if None not in sizes.values():  # donated state aliases its output: count it once
        live = sizes["xla_argument_bytes"] + sizes["xla_output_bytes"] + sizes["xla_temp_bytes"]
        live -= sizes["xla_alias_bytes"]
    return {
        "config": config.get("task"),
        "profile": config.get("profile"),
        "device_kind": jax.devices()[0].device_kind,
        "platform": jax.devices()[0].platform,
        "num_devices": mesh.size,
        "parallel": config.parallel,
        "dtype": dtype_name(compute_dtype(config)),
        "global_batch": global_batch,
        "num_params": parallel.tree_size(state.params),
        "lower_s": lower_s,
        "compile_s": compile_s,
        "xla_flops_per_step": _flops(lowered.cost_analysis()),
        "analytic_flops_per_step": None
        if per_example is None
        else float(per_example) * global_batch,
        **sizes,
        "xla_live_bytes": live,
        "versions": environment.versions(),
        "xla_flags": os.environ.get("XLA_FLAGS", ""),
        "host": platform.node(),
        "cpu_count": os.cpu_count(),
    }


def compile_only(config: ml_collections.ConfigDict) -> dict[str, Any]:
    """Compiles the train step on abstract shapes and reports XLA's memory and FLOP figures.

    Nothing the size of the model is allocated, so this sizes a step for a bigger device than
    the one it runs on (e.g. full512 at batch 16 on a laptop). The byte counts are XLA's buffer
    assignment for *this* backend; another backend's differ, but arguments scale the same.
    """
    task, mesh, _, batch, built = prepare(config)
    state = jax.eval_shape(built.init_state)
    compiled = _compile(built, state, batch, jax.eval_shape(built.new_metrics))
    return {"mode": "compile_only", **_describe(config, task, mesh, state, *compiled)}


def benchmark(
    config: ml_collections.ConfigDict, *, steps: int = 20, warmup: int = 3, input_batches: int = 0
) -> dict[str, Any]:
    """Runs the benchmark and returns its record (see module docstring)."""
    task, mesh, datasets, batch, built = prepare(config)

    t0 = time.perf_counter()
    state = built.init_state()
    jax.block_until_ready(state)
    init_s = time.perf_counter() - t0
    acc = built.new_metrics()
    lowered, compiled, lower_s, compile_s = _compile(built, state, batch, acc)
    record = _describe(config, task, mesh, state, lowered, compiled, lower_s, compile_s)

    with metrics_lib.CompileCounter() as compiles:
        for _ in range(warmup):
            state, acc = compiled(state, batch, acc)
        jax.block_until_ready(state)
        times = []
        for _ in range(steps):
            t0 = time.perf_counter()
            state, acc = compiled(state, batch, acc)
            jax.block_until_ready(state)
            times.append(time.perf_counter() - t0)
    step_s = statistics.median(times)
    analytic = record["analytic_flops_per_step"]
    peak, peak_source = device_peak_flops(compute_dtype(config))
    n_dev = mesh.size
    useful = analytic if analytic is not None else record["xla_flops_per_step"]
    record.update(
        {
            "init_s": init_s,
            "step_ms_median": step_s * 1e3,
            "step_ms_p10": float(np.percentile(times, 10)) * 1e3,
            "step_ms_p90": float(np.percentile(times, 90)) * 1e3,
            "timed_steps": steps,
            "warmup_steps": warmup,
            "examples_per_sec": int(config.batch_size) / step_s,
            "steps_per_sec": 1.0 / step_s,
            "achieved_tflops_per_device": (useful / step_s / n_dev / 1e12) if useful else None,
            "peak_tflops_per_device": peak / 1e12,
            "peak_source": peak_source,
            "mfu": (useful / step_s / n_dev / peak) if useful and peak == peak else None,
            "mfu_flops_source": "analytic" if analytic is not None else "xla cost analysis",
            "compilations_during_timing": compiles.count,
            "device_peak_bytes": (jax.devices()[0].memory_stats() or {}).get("peak_bytes_in_use"),
        }
    )
    if input_batches:
        record.update(time_input(datasets, config, mesh, input_batches, built.stacked))
    return record


def _flops(cost: Any) -> float | None:
    if isinstance(cost, (list, tuple)):
        cost = cost[0] if cost else None
    if not cost:
        return None
    value = cost.get("flops")
    return None if value is None or value < 0 else float(value)


def format_table(record: dict[str, Any]) -> str:
    def fmt(value):
        if value is None:
            return "n/a"
        if isinstance(value, float):
            return f"{value:.4g}"
        return str(value)

    keys = [
        "config", "profile", "mode", "device_kind", "num_devices", "parallel", "dtype",
        "global_batch", "num_params", "compile_s", "step_ms_median", "step_ms_p10", "step_ms_p90",
        "examples_per_sec", "xla_flops_per_step", "analytic_flops_per_step",
        "achieved_tflops_per_device", "peak_tflops_per_device", "peak_source", "mfu",
        "mfu_flops_source", "compilations_during_timing", "xla_argument_bytes",
        "xla_temp_bytes", "xla_live_bytes", "device_peak_bytes", "input_examples_per_sec",
        "lower_s",
    ]  # fmt: skip
    width = max(len(k) for k in keys)
    return "\n".join(f"{k:<{width}}  {fmt(record.get(k))}" for k in keys if k in record)


def main(argv: list[str]) -> None:
    from absl import app, flags
    from ml_collections import config_flags

    from common import cli

    try:
        cli._precheck_argv([a for a in argv[1:] if a.startswith("--config")])
    except cli.ConfigError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
    config_flags.DEFINE_config_file(
        "config", None, "configs/<family>.py[:profile]", lock_config=True
    )
    flags.DEFINE_integer("steps", 20, "timed steps (median reported)")
    flags.DEFINE_integer("warmup", 3, "untimed steps after compilation")
    flags.DEFINE_integer("input_batches", 0, "also time N batches of the input pipeline alone")
    flags.DEFINE_bool(
        "compile_only",
        False,
        "compile on abstract shapes and report XLA memory/FLOPs only (sizes a step that does "
        "not fit this machine)",
    )
    flags.DEFINE_string(
        "out", None, "JSON output path (default runs/bench/<family>_<profile>.json)"
    )

    def _main(_):
        cli.quiet_library_logs()
        config = flags.FLAGS.config
        if flags.FLAGS.compile_only:
            record = compile_only(config)
        else:
            record = benchmark(
                config,
                steps=flags.FLAGS.steps,
                warmup=flags.FLAGS.warmup,
                input_batches=flags.FLAGS.input_batches,
            )
        family = str(config.task).split(".")[0]
        out = flags.FLAGS.out or os.path.join(
            "runs", "bench", f"{family}_{config.profile or 'default'}.json"
        )
        os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
        with open(out, "w") as f:
            json.dump(record, f, indent=2, default=str)
        print(format_table(record))
        print(f"wrote {out}")
        logging.info("bench done")

    app.run(_main, argv=argv)


if __name__ == "__main__":
    main(sys.argv)
