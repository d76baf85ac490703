"""The ViT train step against PyTorch eager on the same machine, back to back.

    python benchmarks/vs_pytorch.py [--torch-python PY] [--runs 3] [--steps 20] \
        [--config configs/vit.py:default] [--out runs/bench/vs_pytorch.json] [-- --config.x=y ...]

Ours: `python -m common.bench` on the config (the loop's own compiled step: on-device
augmentation, forward, backward, AdamW with clipping, label smoothing, metrics). Theirs: timm's
`VisionTransformer` of the same shape (patch 4, CLS token, qkv bias, the config's dropouts),
eager PyTorch, AdamW + clip_grad_norm_ + label-smoothed cross-entropy, one random batch of the
same size, `torch.set_num_threads(cpu count)`; no augmentation (ours does more work). Runs
alternate (ours, theirs, ours, ...) so that both see the same machine state; each reports the
median of `--steps` timed steps after 3 warm-up steps, and the table gives every run and the
ratio of medians.

PyTorch is not a dependency of this project: install it (with timm) in any Python, e.g.
``python -m venv /tmp/torch && /tmp/torch/bin/pip install torch timm numpy``, and pass that
interpreter as ``--torch-python``. The timm side is this same file run with ``--worker torch``.
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def torch_worker(args) -> dict:
    """One PyTorch timing run (executed by the torch interpreter; imports nothing of ours)."""
    import timm
    import torch

    threads = args.threads or os.cpu_count()
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    model = timm.models.vision_transformer.VisionTransformer(
        img_size=32,
        patch_size=4,
        num_classes=10,
        embed_dim=args.width,
        depth=args.depth,
        num_heads=args.heads,
        mlp_ratio=args.mlp / args.width,
        qkv_bias=True,
        class_token=True,
        global_pool="token",
        pos_drop_rate=args.dropout,
        proj_drop_rate=args.dropout,
        attn_drop_rate=args.attention_dropout,
        drop_path_rate=args.drop_path,
    )
    model.train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=0.05)
    loss_fn = torch.nn.CrossEntropyLoss(label_smoothing=args.label_smoothing)
    images = torch.randn(args.batch, 3, 32, 32)
    labels = torch.randint(0, 10, (args.batch,))

    def step():
        opt.zero_grad(set_to_none=True)
        loss = loss_fn(model(images), labels)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        return loss

    for _ in range(3):
        step()
    times = []
    for _ in range(args.steps):
        t0 = time.perf_counter()
        step()
        times.append(time.perf_counter() - t0)
    median = statistics.median(times)
    return {
        "framework": f"pytorch {torch.__version__} eager, timm {timm.__version__}",
        "threads": threads,
        "num_params": sum(p.numel() for p in model.parameters()),
        "step_ms_median": median * 1e3,
        "examples_per_sec": args.batch / median,
    }


def ours(config: str, steps: int, extra: list[str]) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "bench.json")
        cmd = [sys.executable, "-m", "common.bench", f"--config={config}", f"--steps={steps}"]
        subprocess.run([*cmd, f"--out={out}", *extra], cwd=REPO, check=True, capture_output=True)
        with open(out) as f:
            return json.load(f)


def theirs(torch_python: str, shape: dict, steps: int) -> dict:
    flags = [f"--{k.replace('_', '-')}={v}" for k, v in shape.items()]
    cmd = [torch_python, os.path.abspath(__file__), "--worker", "torch", f"--steps={steps}", *flags]
    done = subprocess.run(cmd, check=True, capture_output=True, text=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def model_shape(config_arg: str, extra: list[str]) -> dict:
    """The timm arguments that reproduce the config's model (after command-line overrides)."""
    sys.path.insert(0, REPO)
    from common.cli import load_config

    config = load_config(config_arg, extra)
    m = config.model
    return {
        "width": m.embedding_dim,
        "depth": m.num_layers,
        "heads": m.num_heads,
        "mlp": m.mlp_size,
        "dropout": m.dropout_rate,
        "attention_dropout": m.attention_dropout_rate,
        "drop_path": m.stochastic_depth_rate,
        "label_smoothing": config.label_smoothing,
        "batch": config.batch_size,
    }


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--worker", choices=("torch",), help=argparse.SUPPRESS)
    ap.add_argument("--torch-python", default=sys.executable)
    ap.add_argument("--config", default="configs/vit.py:default")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--out", default=os.path.join(REPO, "runs", "bench", "vs_pytorch.json"))
    for name, kind in (
        ("width", int),
        ("depth", int),
        ("heads", int),
        ("mlp", int),
        ("dropout", float),
        ("attention-dropout", float),
        ("drop-path", float),
        ("label-smoothing", float),
        ("batch", int),
        ("threads", int),
    ):
        ap.add_argument(f"--{name}", type=kind, default=0, help=argparse.SUPPRESS)
    args, extra = ap.parse_known_args(argv)
    extra = [a for a in extra if a != "--"]
    if args.worker == "torch":
        print(json.dumps(torch_worker(args)))
        return 0
    os.chdir(REPO)  # config paths are relative to the repository
    shape = model_shape(args.config, extra)
    records = []
    for run in range(args.runs):
        for name, measure in (
            ("ours", lambda: ours(args.config, args.steps, extra)),
            ("pytorch", lambda: theirs(args.torch_python, shape, args.steps)),
        ):
            record = measure()
            record.update(side=name, run=run + 1)
            records.append(record)
            print(
                f"run {run + 1} {name:8s} {record['examples_per_sec']:8.1f} img/s "
                f"({record['step_ms_median']:.0f} ms/step)",
                flush=True,
            )
    rate = {
        s: [r["examples_per_sec"] for r in records if r["side"] == s] for s in ("ours", "pytorch")
    }
    summary = {
        "config": args.config,
        "overrides": extra,
        "shape": shape,
        "ours_img_per_s": rate["ours"],
        "pytorch_img_per_s": rate["pytorch"],
        "ratio_of_medians": statistics.median(rate["ours"]) / statistics.median(rate["pytorch"]),
        "runs": records,
    }
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    with open(args.out, "w") as f:
        json.dump(summary, f, indent=2, default=str)
    print(f"ours / pytorch (medians of {args.runs} runs): {summary['ratio_of_medians']:.2f}x")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
