"""Every accelerator measurement in one command: `python -m common.campaign`.

    python -m common.campaign --out DIR [--minutes 8] [--scale full|smoke]
                              [--cifar PATH] [--work DIR]

Meant for a GPU/TPU machine held for a few minutes: one call measures what the project claims
on whatever accelerator JAX finds, and writes ``DIR/report.md`` (tables a person reads),
``DIR/report.json`` (every figure) and ``DIR/logs/<stage>.log`` (7 files, 2 levels at most).

Stages, in order, each with its own share of ``--minutes``:
- ``environment``: versions, devices, measured bf16 and float32 matmul rates.
- ``bench``: `common.bench` of each family's accelerator profiles in bfloat16 (vit default
  and strong, scanline lrcn and vit_baseline, mathart tiny32 and full512, ternary_vae
  mathematical_foundation): compile seconds, step ms, examples/s, MFU, memory.
- ``vit``: the seed's recipe (vit ``default``) on CIFAR-10 (``--cifar``: a prepared data_dir,
  or a source `vit.prepare_cifar10` accepts) for its 100 epochs if the throughput measured by
  ``bench`` fits the box, else for as many epochs as fit, with the schedule compressed to
  them; test accuracy after every epoch.
- ``mathart``: ``tiny32`` trained for a fixed box, then `mathart.evaluate` (top-1 of 10 by
  SSIM and by geometry, SSIM, harmony) on held-out formulas.
- ``parity``: `jax.jit` and `jax.pmap` steps give the same losses on the real devices; the
  bfloat16 step's losses against float32's.

Every unit of work (one stage, or one profile of ``bench``) runs in a child process with a
time box: a crash, an out-of-memory error or a hang is recorded in the report and the next unit
starts. Unused time rolls over to later stages. ``--scale smoke`` runs every stage with the
families' ``smoke`` profiles and XLA's fast-compile mode, on CPU in under 2 minutes (a test does
exactly that); its speeds mean nothing.
"""

import argparse
import contextlib
import dataclasses
import json
import logging
import math
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any

STAGES = ("environment", "bench", "vit", "mathart", "parity")
SHARES = {"environment": 0.04, "bench": 0.36, "vit": 0.30, "mathart": 0.20, "parity": 0.10}
STARTUP_S = 6.0  # a child's own start (Python, JAX, device init), outside its work
MIN_BOX_S = 15.0  # no unit gets less, unless the whole campaign's time is running out
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@dataclasses.dataclass(frozen=True)
class Plan:
    """What each stage runs at one scale."""

    bench: tuple[str, ...]  # "family:profile"
    bench_steps: int
    vit: str
    mathart: str
    mathart_overrides: dict
    eval_formulas: int
    eval_k: int
    parity: str
    parity_overrides: dict
    matmul_size: int


PLANS = {
    "full": Plan(
        bench=(
            "vit:default",
            "vit:strong",
            "scanline:lrcn",
            "scanline:vit_baseline",
            "mathart:tiny32",
            "ternary_vae:mathematical_foundation",
            # Last: its compile is the longest, and a unit inherits the time others left.
            "mathart:full512",
        ),
        bench_steps=20,
        vit="default",
        mathart="tiny32",
        # Rendering the profile's 20,000 training formulas costs the host about a minute of a
        # box of a few minutes; 5,000 leave the time to training. Recorded in the report.
        mathart_overrides={"data.num_train": 5000},
        eval_formulas=200,
        eval_k=10,
        parity="small",
        parity_overrides={},
        matmul_size=8192,
    ),
    "smoke": Plan(
        # One profile: the path is the same for every family, and each costs 15-20 s of
        # start and compile on 2 cores (mathart's most of a minute; its own stage trains it).
        bench=("vit:smoke",),
        bench_steps=2,
        vit="smoke",
        mathart="smoke",
        mathart_overrides={"sample.every_epochs": 0},
        eval_formulas=8,
        eval_k=4,
        parity="smoke",
        parity_overrides={"model.num_layers": 1, "model.embedding_dim": 16, "model.mlp_size": 32},
        matmul_size=256,
    ),
}

# Bench needs one batch, not a dataset: shrink what a profile would generate on the host.
BENCH_OVERRIDES = {"scanline": {"synth.n": 256, "synth.test_n": 64}}


# ---- helpers shared by the stages ----------------------------------------------------------
def load_profile(family: str, profile: str, overrides: dict | None = None):
    from common.cli import load_config_file

    config = load_config_file(os.path.join(REPO, "configs", f"{family}.py:{profile}"))
    config.update_from_flattened_dict(overrides or {})
    return config


def unit_result(work: str, stage: str, item: str = "") -> str:
    """Where a unit's child process writes its result (the parent and later units read it)."""
    name = f"{stage}_{item.replace(':', '_')}" if item else stage
    return os.path.join(work, "units", f"{name}.json")


def curves(run_dir: str) -> dict:
    """A run's metrics.jsonl as key -> points (`common.analyze`'s reader); empty if none."""
    from common.analyze import read_metrics

    with contextlib.suppress(FileNotFoundError):
        return read_metrics(run_dir)
    return {}


class Recorder:
    """A unit's result, rewritten to disk after every update so a killed unit keeps what it
    measured before the kill."""

    def __init__(self, path: str):
        self.path = path
        self.data: dict[str, Any] = {}

    def update(self, **values) -> None:
        self.data.update(values)
        tmp = self.path + ".tmp"
        with open(tmp, "w") as f:
            json.dump(self.data, f, indent=2, default=str)
        os.replace(tmp, self.path)


# ---- stages (each runs inside its child process) -------------------------------------------
def stage_environment(plan: Plan, rec: Recorder, **_) -> None:
    import jax
    import jax.numpy as jnp
    import numpy as np

    from common import environment

    rec.update(versions=environment.versions(), devices=environment.devices())
    rec.update(
        xla_flags=os.environ.get("XLA_FLAGS", ""), jax_platforms=os.environ.get("JAX_PLATFORMS", "")
    )
    stats = jax.local_devices()[0].memory_stats() or {}
    rec.update(device_memory_bytes=stats.get("bytes_limit"))
    n = plan.matmul_size
    rates = {}
    for name, dtype, precision in (
        ("bfloat16", jnp.bfloat16, None),
        ("float32", jnp.float32, None),
        ("float32_highest", jnp.float32, "highest"),
    ):
        keys = jax.random.split(jax.random.key(0), 4)
        # Random operands, rotated between calls: zeros run faster than real data, and one
        # pair reused could be served from cache.
        pairs = [
            (
                jax.random.normal(keys[i], (n, n), dtype),
                jax.random.normal(keys[i + 1], (n, n), dtype),
            )
            for i in (0, 2)
        ]
        matmul = jax.jit(lambda a, b, p=precision: jnp.matmul(a, b, precision=p))
        for a, b in pairs:
            matmul(a, b).block_until_ready()
        times = []
        for i in range(10):
            t0 = time.perf_counter()
            matmul(*pairs[i % 2]).block_until_ready()
            times.append(time.perf_counter() - t0)
        rates[name] = 2.0 * n**3 / float(np.median(times)) / 1e12
        rec.update(matmul_size=n, matmul_tflops=rates)


def stage_bench(plan: Plan, rec: Recorder, *, item: str, **_) -> None:
    from common import bench

    family, profile = item.split(":")
    config = load_profile(family, profile, BENCH_OVERRIDES.get(family))
    config.dtype = "bfloat16"
    rec.update(profile=item, dtype="bfloat16", phase="building, compiling and timing the step")
    record = bench.benchmark(config, steps=plan.bench_steps, warmup=2)
    keep = (
        "device_kind", "num_devices", "global_batch", "num_params", "lower_s", "compile_s",
        "step_ms_median", "step_ms_p10", "step_ms_p90", "examples_per_sec",
        "achieved_tflops_per_device", "peak_tflops_per_device", "mfu", "mfu_flops_source",
        "xla_live_bytes", "device_peak_bytes", "compilations_during_timing",
    )  # fmt: skip
    rec.update(phase="done", **{k: record.get(k) for k in keep})


def _cifar_data_dir(cifar: str, work: str, limit: int | None) -> str:
    """A data_dir holding prepared CIFAR-10: `cifar` itself, or a copy prepared from it."""
    from vit import input_pipeline, prepare_cifar10

    if os.path.isdir(os.path.join(cifar, input_pipeline.ARRAYS_DIR)):
        return cifar
    target = os.path.join(work, "cifar10")
    if not os.path.isdir(os.path.join(target, input_pipeline.ARRAYS_DIR)):
        data = prepare_cifar10.read_source(cifar, limit)
        input_pipeline.write_arrays(data, target, source=os.path.abspath(cifar))
    return target


def stage_vit(plan: Plan, rec: Recorder, *, work: str, box: float, cifar: str, **_) -> None:
    from common.train import train_and_evaluate
    from vit import input_pipeline
    from vit.task import VitTask

    t_start = time.monotonic()
    if not cifar:
        rec.update(status="skipped", reason="no CIFAR-10: pass --cifar (a data_dir or a source)")
        return
    smoke = plan.vit == "smoke"
    data_dir = _cifar_data_dir(cifar, work, 20 if smoke else None)
    rec.update(data_dir=data_dir, prepare_s=time.monotonic() - t_start)

    config = load_profile("vit", plan.vit)
    config.data_dir, config.download = data_dir, False
    # The seed validated on the test set after every epoch: accuracy against epochs.
    config.val_split = "test"
    config.final_eval_splits = ()
    config.compilation_cache_dir = ""
    with open(os.path.join(data_dir, input_pipeline.ARRAYS_DIR, input_pipeline.ARRAYS_INFO)) as f:
        train_examples = json.load(f)["splits"]["train"]  # val_split="test": all of them
    full_epochs = float(config.max_epochs)
    bench_rate = _bench_rate(work, f"vit:{plan.vit}")
    epochs = full_epochs
    if bench_rate and not smoke:  # smoke trains its profile's 2 epochs as they are
        # Compile (~30 s) and one eval of 10,000 images per epoch come out of the box too.
        usable = box - (time.monotonic() - t_start) - 45.0
        per_epoch = train_examples / bench_rate + 1.0
        epochs = float(max(1, min(full_epochs, math.floor(usable / per_epoch))))
    if epochs < full_epochs:
        ratio = epochs / full_epochs
        config.max_epochs = epochs
        config.optim.warmup_epochs = float(config.optim.warmup_epochs) * ratio
        config.checkpoint_every_epochs = None
    remaining = box - (time.monotonic() - t_start)
    # The box's safety net, with room for the stop's checkpoint save.
    config.max_training_hours = max(remaining - 30.0, 5.0) / 3600.0
    rec.update(
        profile=f"vit:{plan.vit}",
        epochs_planned=epochs,
        epochs_of_recipe=full_epochs,
        bench_examples_per_sec=bench_rate,
        schedule="the seed's" if epochs == full_epochs else f"compressed to {epochs:g} epochs",
    )
    workdir = os.path.join(work, "vit_run")
    shutil.rmtree(workdir, ignore_errors=True)
    t0 = time.monotonic()
    rec.update(phase=f"training in {workdir}")
    result = train_and_evaluate(VitTask, config, workdir)
    series = curves(workdir)
    curve = [(p.epoch, p.value) for p in series.get("val/accuracy", [])]
    rates = [p.value for p in series.get("perf/examples_per_sec", [])]
    rec.update(
        status=result.status,
        steps=result.step,
        epochs_trained=curve[-1][0] if curve else 0.0,
        test_accuracy_by_epoch=curve,
        final_test_accuracy=curve[-1][1] if curve else None,
        best_test_accuracy=max((a for _, a in curve), default=None),
        train_examples_per_sec=rates[-1] if rates else None,
        wall_s=time.monotonic() - t0,
    )


def _bench_rate(work: str, item: str) -> float | None:
    with contextlib.suppress(OSError, ValueError), open(unit_result(work, "bench", item)) as f:
        return json.load(f).get("examples_per_sec")
    return None


def stage_mathart(plan: Plan, rec: Recorder, *, work: str, box: float, **_) -> None:
    from common.train import train_and_evaluate
    from mathart import evaluate
    from mathart.task import MathArtTask

    t_start = time.monotonic()
    config = load_profile("mathart", plan.mathart, plan.mathart_overrides)
    config.compilation_cache_dir = ""
    config.final_eval_splits = ()
    # Training gets 60 % of the box; sampling and scoring the held-out formulas the rest.
    config.max_training_hours = 0.6 * box / 3600.0
    workdir = os.path.join(work, "mathart_run")
    shutil.rmtree(workdir, ignore_errors=True)
    rec.update(
        profile=f"mathart:{plan.mathart}",
        overrides=plan.mathart_overrides,
        phase=f"training in {workdir}",
    )
    result = train_and_evaluate(MathArtTask, config, workdir)
    series = curves(workdir)
    last = lambda key: series[key][-1].value if series.get(key) else None
    rec.update(
        status=result.status,
        steps=result.step,
        epochs=series["train/loss"][-1].epoch if series.get("train/loss") else None,
        train_loss=last("train/loss"),
        val_loss=last("val/loss"),
        train_examples_per_sec=last("perf/examples_per_sec"),
        train_wall_s=time.monotonic() - t_start,
        phase="sampling and scoring held-out formulas",
    )
    out = os.path.join(work, "mathart_eval.json")
    num = min(plan.eval_formulas, int(config.data.num_test))
    args = ["--workdir", workdir, "--which", "latest", "--split", "test", "--num", str(num)]
    args += ["--k", str(plan.eval_k), "--diversity-formulas", "0", "--out", out]
    evaluate.main(args)
    with open(out) as f:
        scores = json.load(f)
    keep = ("top1_ssim", "top1_geometry", "ssim", "harmony", "harmony_truth", "k", "sampler")
    rec.update(
        phase="done",
        eval_formulas=num,
        scores_file=out,
        **{k: scores.get(k) for k in keep if k in scores},
    )


def stage_parity(plan: Plan, rec: Recorder, **_) -> None:
    """Same batches, same init: per-step losses of jit vs pmap (float32) and bf16 vs f32."""
    import jax
    import numpy as np

    from common import metrics as metrics_lib
    from common import parallel
    from common.steps import build_steps
    from vit.task import VitTask

    def losses(parallel_mode: str, dtype: str, n_steps: int = 4) -> list[float]:
        config = load_profile("vit", plan.parity, plan.parity_overrides)
        # Dropout and augmentation draw per-device keys under pmap; switch them off so both
        # paths compute the same function.
        config.model.dropout_rate = config.model.attention_dropout_rate = 0.0
        config.model.stochastic_depth_rate = 0.0
        config.augment.crop_padding, config.augment.flip = 0, False
        config.parallel, config.dtype = parallel_mode, dtype
        config.batch_size = 32 * jax.device_count()
        task = VitTask(config)
        mesh = parallel.make_mesh()
        rng = np.random.default_rng(0)
        batches = [task.synthetic_batch(config.batch_size, rng) for _ in range(n_steps)]
        small = {k: v[:2] for k, v in batches[0].items()}
        steps = build_steps(task, config, mesh, small, steps_per_epoch=100, total_steps=1000)
        state = steps.init_state()
        out = []
        for batch in batches:
            placed = parallel.place_batch(batch, mesh, stacked=steps.stacked)
            state, acc = steps.train_step(state, placed, steps.new_metrics())
            out.append(metrics_lib.compute_train_metrics(acc)["loss"])
        return out

    rel = lambda a, b: float(np.max(np.abs(np.subtract(a, b)) / np.abs(b)))
    jit32 = losses("jit", "float32")
    rec.update(devices=jax.device_count(), jit_float32=jit32)
    try:
        pmap32 = losses("pmap", "float32")
        rec.update(pmap_float32=pmap32, jit_vs_pmap_max_rel=rel(pmap32, jit32))
    except Exception as e:  # the report says what pmap did on this jax, then goes on
        rec.update(pmap_error=f"{type(e).__name__}: {e}".splitlines()[0])
    bf16 = losses("jit", "bfloat16")
    rec.update(jit_bfloat16=bf16, bf16_vs_f32_max_rel=rel(bf16, jit32))


STAGE_FNS: dict[str, Callable[..., None]] = {
    "environment": stage_environment,
    "bench": stage_bench,
    "vit": stage_vit,
    "mathart": stage_mathart,
    "parity": stage_parity,
}


def run_unit(stage: str, *, result: str, **kwargs) -> int:
    """Child-process entry: runs one unit, records success or the error, exits 0/1."""
    from common.cli import quiet_library_logs

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    quiet_library_logs()
    rec = Recorder(result)
    t0 = time.monotonic()
    try:
        STAGE_FNS[stage](PLANS[kwargs.pop("scale")], rec, **kwargs)
        rec.update(unit_status=rec.data.get("unit_status", "ok"))
        return 0
    except Exception as e:
        logging.exception("stage %s failed", stage)
        rec.update(unit_status="failed", error=f"{type(e).__name__}: {e}".strip()[:2000])
        return 1
    finally:
        rec.update(unit_wall_s=time.monotonic() - t0)


# ---- the parent: schedule units, collect, report -------------------------------------------
def _spawn(
    stage: str, item: str, *, box: float, args: argparse.Namespace, log, result: str
) -> tuple[str, float]:
    """Runs one unit in a child process for at most `box` seconds: (status, seconds)."""
    cmd = [sys.executable, "-m", "common.campaign", "--unit", stage, "--item", item]
    cmd += ["--box", f"{box:.1f}", "--work", args.work, "--scale", args.scale, "--result", result]
    cmd += ["--cifar", args.cifar or ""]
    log.write(f"\n===== {stage} {item} (box {box:.0f} s): {' '.join(cmd)}\n")
    log.flush()
    t0 = time.monotonic()
    # Its own process group, so a timeout also ends whatever the unit started (data workers).
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(filter(None, (REPO, os.environ.get("PYTHONPATH")))),
    }
    if args.scale == "smoke":
        # Smoke checks that every stage works, not how fast: XLA's fast compile mode keeps
        # mathart's compiles inside a 3-minute budget on 2 CPU cores.
        env.setdefault("JAX_DISABLE_MOST_OPTIMIZATIONS", "1")
    proc = subprocess.Popen(
        cmd, cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
    )
    try:
        rc = proc.wait(timeout=box + STARTUP_S)
        status = "ok" if rc == 0 else f"failed (exit {rc})"
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        status = f"timed out after {box + STARTUP_S:.0f} s"
    return status, time.monotonic() - t0


def run_campaign(args: argparse.Namespace) -> dict:
    plan = PLANS[args.scale]
    os.makedirs(os.path.join(args.out, "logs"), exist_ok=True)
    os.makedirs(os.path.join(args.work, "units"), exist_ok=True)
    deadline = time.monotonic() + args.minutes * 60.0
    report: dict[str, Any] = {
        "command": "python -m common.campaign " + " ".join(sys.argv[1:]),
        "scale": args.scale,
        "minutes": args.minutes,
        "started": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        "stages": {},
    }
    for i, stage in enumerate(STAGES):
        items = list(plan.bench) if stage == "bench" else [""]
        share = SHARES[stage] / sum(SHARES[s] for s in STAGES[i:])
        stage_box = share * (deadline - time.monotonic())
        stage_end = time.monotonic() + stage_box
        units = []
        with open(os.path.join(args.out, "logs", f"{stage}.log"), "a") as log:
            for j, item in enumerate(items):
                result = unit_result(args.work, stage, item)
                with contextlib.suppress(FileNotFoundError):
                    os.remove(result)
                box = (stage_end - time.monotonic()) / (len(items) - j) - STARTUP_S
                # A small share still gets a useful box, while the whole budget allows it.
                box = min(max(box, MIN_BOX_S), deadline - time.monotonic() - STARTUP_S)
                if box < 3.0:
                    units.append({"item": item, "unit_status": "skipped: no time left in box"})
                    continue
                status, seconds = _spawn(stage, item, box=box, args=args, log=log, result=result)
                data = {}
                with contextlib.suppress(OSError, ValueError), open(result) as f:
                    data = json.load(f)
                if status != "ok" or "unit_status" not in data:
                    data["unit_status"] = status if status != "ok" else "failed (no result)"
                    if data.get("phase") not in (None, "done"):
                        data["unit_status"] += f", while {data['phase']}"
                units.append({"item": item, **data, "box_s": box, "process_s": seconds})
        report["stages"][stage] = units
        _write_reports(args.out, report)  # after every stage: a cut-off call keeps the rest
    report["finished"] = time.strftime("%Y-%m-%d %H:%M:%S %Z")
    _write_reports(args.out, report)
    return report


# ---- report --------------------------------------------------------------------------------
def _fmt(value: Any, digits: int = 4) -> str:
    if value is None:
        return "n/a"
    if isinstance(value, float):
        return f"{value:.{digits}g}"
    return str(value)


def _bytes(n: Any) -> str:
    if not isinstance(n, (int, float)):
        return "n/a"
    return f"{n / 2**30:.2f} GiB" if n >= 2**30 else f"{n / 2**20:.1f} MiB"


def _table(header: list[str], rows: list[list[Any]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(_fmt(v) for v in row) + " |" for row in rows]
    return lines


def render_markdown(report: dict) -> str:
    stages = report["stages"]
    md = [
        f"# Campaign report ({report['scale']}, {report['minutes']} min)",
        "",
        f"Command: `{report['command']}`  ",
        f"Started {report['started']}; finished {report.get('finished', 'not (cut off)')}."
        + (
            " Smoke scale: XLA optimisations off, so no speed here means anything."
            if report["scale"] == "smoke"
            else ""
        ),
        "",
    ]
    md += ["## Stages", ""]
    md += _table(
        ["stage", "unit", "box s", "used s", "status"],
        [
            [stage, u.get("item") or "-", u.get("box_s"), u.get("process_s"), u.get("unit_status")]
            for stage, units in stages.items()
            for u in units
        ],
    )
    md += [""]
    env = (stages.get("environment") or [{}])[0]
    dev, ver = env.get("devices", {}), env.get("versions", {})
    md += ["## Environment", ""]
    md += [
        f"- devices: {dev.get('device_count', 'n/a')} x {dev.get('device_kind', 'n/a')} "
        f"({dev.get('backend', 'n/a')}), memory {_bytes(env.get('device_memory_bytes'))}",
        f"- versions: {', '.join(f'{k} {v}' for k, v in ver.items()) or 'n/a'}",
        f"- XLA_FLAGS: `{env.get('xla_flags', '')}`",
    ]
    rates = env.get("matmul_tflops", {})
    md += [
        f"- matmul {env.get('matmul_size', 'n/a')}^3, TFLOP/s measured: "
        + (", ".join(f"{k} {_fmt(v)}" for k, v in rates.items()) or "n/a"),
        f"- status: {env.get('unit_status', 'n/a')} {env.get('error', '')}",
        "",
        "## Train-step benchmarks (bfloat16, `common.bench`)",
        "",
    ]
    rows = []
    for u in stages.get("bench", []):
        status = u.get("unit_status", "n/a")
        rows.append(
            [
                u.get("item"),
                u.get("global_batch"),
                u.get("compile_s"),
                u.get("step_ms_median"),
                u.get("examples_per_sec"),
                u.get("mfu"),
                _bytes(u.get("xla_live_bytes")),
                _bytes(u.get("device_peak_bytes")),
                status if status == "ok" else f"{status}: {u.get('error', '')[:120]}",
            ]
        )
    md += _table(
        ["profile", "batch", "compile s", "step ms", "examples/s", "MFU", "XLA live",
         "device peak", "status"],
        rows,
    )  # fmt: skip
    vit = (stages.get("vit") or [{}])[0]
    md += ["", "## ViT, the seed's recipe on CIFAR-10", ""]
    md += [
        f"- {vit.get('profile', 'n/a')}: {_fmt(vit.get('epochs_trained'))} of "
        f"{_fmt(vit.get('epochs_of_recipe'))} epochs ({vit.get('schedule', 'n/a')}), "
        f"status {vit.get('status', vit.get('unit_status', 'n/a'))} {vit.get('reason', '')}"
        f"{vit.get('error', '')}",
        f"- final test accuracy {_fmt(vit.get('final_test_accuracy'))}, best "
        f"{_fmt(vit.get('best_test_accuracy'))}; {_fmt(vit.get('train_examples_per_sec'))} "
        f"training images/s; {_fmt(vit.get('wall_s'))} s",
    ]
    curve = vit.get("test_accuracy_by_epoch") or []
    if curve:
        md += ["", *_table(["epoch", "test accuracy"], [[e, a] for e, a in curve])]
    ma = (stages.get("mathart") or [{}])[0]
    md += ["", "## mathart, trained for a fixed box", ""]
    md += [
        f"- {ma.get('profile', 'n/a')} with {ma.get('overrides', {})}: {ma.get('steps', 'n/a')} "
        f"steps ({_fmt(ma.get('epochs'))} epochs) in {_fmt(ma.get('train_wall_s'))} s, "
        f"status {ma.get('status', ma.get('unit_status', 'n/a'))} {ma.get('error', '')}",
        f"- train loss {_fmt(ma.get('train_loss'))}, val loss {_fmt(ma.get('val_loss'))}",
        f"- {ma.get('eval_formulas', 'n/a')} held-out formulas, top-1 of {ma.get('k', 'n/a')}: "
        f"SSIM {_fmt(ma.get('top1_ssim'))}, geometry {_fmt(ma.get('top1_geometry'))}; "
        f"SSIM {_fmt(ma.get('ssim'))}; harmony {_fmt(ma.get('harmony'))} "
        f"(truth {_fmt(ma.get('harmony_truth'))})",
    ]
    par = (stages.get("parity") or [{}])[0]
    md += ["", "## jit vs pmap, bfloat16 vs float32 (same batches, same init)", ""]
    md += [
        f"- {par.get('devices', 'n/a')} device(s); per-step losses, max relative difference: "
        f"jit vs pmap {_fmt(par.get('jit_vs_pmap_max_rel'))}"
        f"{' (pmap: ' + par['pmap_error'] + ')' if par.get('pmap_error') else ''}, "
        f"bf16 vs f32 {_fmt(par.get('bf16_vs_f32_max_rel'))}",
        f"- status: {par.get('unit_status', 'n/a')} {par.get('error', '')}",
        "",
    ]
    return "\n".join(md)


def _write_reports(out: str, report: dict) -> None:
    with open(os.path.join(out, "report.json"), "w") as f:
        json.dump(report, f, indent=2, default=str)
    with open(os.path.join(out, "report.md"), "w") as f:
        f.write(render_markdown(report))


def _parse(argv: list[str]) -> argparse.Namespace:
    ap = argparse.ArgumentParser(
        prog="python -m common.campaign", description=__doc__.split("\n")[0]
    )
    ap.add_argument("--out", help="folder for report.md, report.json and logs/")
    ap.add_argument("--minutes", type=float, default=8.0, help="time for all stages together")
    ap.add_argument("--scale", default="full", choices=sorted(PLANS))
    ap.add_argument("--cifar", default="", help="prepared data_dir or a CIFAR-10 source")
    ap.add_argument("--work", default="", help="scratch folder (default: OUT/../campaign_work)")
    # Internal: one unit in a child process.
    ap.add_argument("--unit", choices=STAGES, help=argparse.SUPPRESS)
    ap.add_argument("--item", default="", help=argparse.SUPPRESS)
    ap.add_argument("--box", type=float, default=0.0, help=argparse.SUPPRESS)
    ap.add_argument("--result", default="", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.unit is None:
        if not args.out:
            ap.error("--out DIR is required")
        if args.minutes <= 0:
            ap.error(f"--minutes must be positive, got {args.minutes:g}")
        if args.cifar and not os.path.exists(args.cifar):
            ap.error(f"--cifar {args.cifar} does not exist")
        args.out = os.path.abspath(args.out)
        args.work = os.path.abspath(
            args.work or os.path.join(os.path.dirname(args.out), "campaign_work")
        )
        args.cifar = os.path.abspath(args.cifar) if args.cifar else ""
    return args


def main(argv: list[str] | None = None) -> int:
    args = _parse(sys.argv[1:] if argv is None else argv)
    if args.unit:
        return run_unit(
            args.unit,
            result=args.result,
            scale=args.scale,
            item=args.item,
            box=args.box,
            work=args.work,
            cifar=args.cifar,
        )
    report = run_campaign(args)
    print(render_markdown(report))
    print(f"wrote {os.path.join(args.out, 'report.md')} and report.json")
    return 0


if __name__ == "__main__":
    sys.exit(main())
