"""Grid sweeps over config fields, then the seed's results table (Markdown + CSV).

    python -m scanline.sweep --config=configs/scanline.py:vit_baseline \
        --grid optim.weight_decay=0,0.01,0.05,0.1 --grid model.dropout=0.1,0.15,0.2 \
        [--point 0,0.1 --point 0.01,0.15 ...]  [--workdir=DIR]  [--config.max_epochs=20 ...]
    python -m scanline.sweep <same flags> --workdir=DIR --table-only   # only rebuild the table

Every grid point (the full product, or only the ``--point``s, each listing one value per
``--grid`` in order) trains through `common.train.train_and_evaluate` in its own
``DIR/<name>`` (a completed run, one with ``final_metrics.json``, is not retrained). Values are
parsed as int, float, bool or string literals (never evaluated) and converted to the type of
the config field they set. The table is read from each run's ``metrics.jsonl`` and
``final_metrics.json`` and written to ``DIR/sweep_results.md`` and ``.csv``; columns follow the
seed's table (config, the grid values, best valid accuracy, best valid loss with its epoch,
train accuracy, train/valid gap, best epoch) plus balanced accuracy, AUROC and the final test
figures of the best checkpoint. ``python -m common.analyze DIR/*`` works on the runs too.
"""

import argparse
import csv
import datetime
import itertools
import json
import math
import os
import re
import sys
from collections.abc import Sequence
from typing import Any

import ml_collections

from common.analyze import read_metrics
from common.cli import load_config_file
from common.config import ConfigError, parse_literal, parse_value, set_value

_ABBREV = {"weight_decay": "wd", "dropout": "drop", "learning_rate": "lr"}


def parse_grid(specs: Sequence[str]) -> list[tuple[str, list[Any]]]:
    """``key=v1,v2,...`` -> [(key, [values])] in the order given."""
    grid = []
    for spec in specs:
        key, sep, values = spec.partition("=")
        if not sep or not key.strip() or not values.strip():
            raise ConfigError(f"--grid must look like key=v1,v2,... (got '{spec}')")
        grid.append((key.strip(), [parse_literal(v) for v in values.split(",")]))
    keys = [k for k, _ in grid]
    if len(set(keys)) != len(keys):
        raise ConfigError(f"a key appears in two --grid flags: {keys}")
    return grid


def grid_points(grid, points: Sequence[str] | None) -> list[tuple[Any, ...]]:
    """Every combination, or the listed ``--point``s (each must lie on the grid)."""
    if not points:
        return list(itertools.product(*(values for _, values in grid)))
    out = []
    for spec in points:
        values = tuple(parse_literal(v) for v in spec.split(","))
        if len(values) != len(grid):
            raise ConfigError(
                f"--point {spec} has {len(values)} values; give one per --grid "
                f"({', '.join(k for k, _ in grid)})"
            )
        for (key, allowed), v in zip(grid, values):
            if v not in allowed:
                raise ConfigError(f"--point {spec}: {key}={v!r} is not on the grid {allowed}")
        out.append(values)
    return out


def run_name(grid, values) -> str:
    parts = []
    for (key, _), v in zip(grid, values):
        leaf = key.split(".")[-1]
        parts.append(f"{_ABBREV.get(leaf, leaf)}{v}")
    return re.sub(r"[^A-Za-z0-9_.+-]", "-", "_".join(parts))


# ---- reading runs -----------------------------------------------------------------------------
def _num(v) -> float:
    return float(v) if isinstance(v, (int, float)) else math.nan


def summarize_run(run_dir: str) -> dict[str, float]:
    """The table's figures for one run, from its metrics (read by `common.analyze`) and
    final_metrics.json. Ties go to the earlier evaluation."""
    series = read_metrics(run_dir)
    evals = series.get("val/accuracy", [])
    if not evals:
        raise ValueError(f"{run_dir}: metrics.jsonl has no val/accuracy records yet")
    best_acc = max(evals, key=lambda p: (p.value, -p.step))
    best_loss = min(series["val/loss"], key=lambda p: (p.value, p.step))
    best_of = lambda key: max((p.value for p in series.get(key, [])), default=math.nan)
    train_acc = best_of("train/accuracy")
    last = max((p for points in series.values() for p in points), key=lambda p: p.step)
    row = {
        "best_val_accuracy": best_acc.value,
        "best_val_balanced_accuracy": best_of("val/balanced_accuracy"),
        "best_val_auroc": best_of("val/auroc"),
        "best_val_loss": best_loss.value,
        "best_val_loss_epoch": _num(best_loss.epoch),
        "train_accuracy": train_acc,
        "gap_points": 100 * (train_acc - best_acc.value),
        "best_epoch": _num(best_acc.epoch),
        "epochs_run": _num(last.epoch),
    }
    final = os.path.join(run_dir, "final_metrics.json")
    if os.path.isfile(final):
        with open(final) as f:
            fm = json.load(f)
        for k in ("accuracy", "balanced_accuracy", "auroc"):
            row[f"test_{k}"] = _num(fm.get(f"final/test/{k}"))
    return row


_COLUMNS = [
    ("best_val_accuracy", "Best Valid Acc", "pct"),
    ("best_val_balanced_accuracy", "Best Valid Bal. Acc", "pct"),
    ("best_val_auroc", "Best Valid AUROC", "f4"),
    ("best_val_loss", "Best Valid Loss (Epoch)", "loss"),
    ("train_accuracy", "Train Acc", "pct"),
    ("gap_points", "Train/Valid Gap", "f2"),
    ("best_epoch", "Best Epoch", "int"),
    ("test_balanced_accuracy", "Test Bal. Acc", "pct"),
    ("test_auroc", "Test AUROC", "f4"),
]


def _fmt(row: dict, key: str, kind: str) -> str:
    v = row.get(key, math.nan)
    if isinstance(v, float) and math.isnan(v):
        return "-"
    if kind == "pct":
        return f"{100 * v:.2f}%"
    if kind == "f4":
        return f"{v:.4f}"
    if kind == "f2":
        return f"{v:.2f}"
    if kind == "int":
        return f"{v:.0f}"
    return f"{v:.3f} ({row.get('best_val_loss_epoch', math.nan):.0f})"


def write_table(workdir: str, entries: list[dict]) -> str:
    """Markdown (sorted by best valid accuracy, as the seed's) and CSV; returns the Markdown."""
    keys = [k for k in entries[0] if k.startswith("grid:")] if entries else []
    entries = sorted(entries, key=lambda e: -e.get("best_val_accuracy", -1))
    head = ["Config", *(k.split(".")[-1] for k in keys), *(title for _, title, _ in _COLUMNS)]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for e in entries:
        cells = [e["config"], *(str(e[k]) for k in keys)]
        cells += [_fmt(e, key, kind) for key, _, kind in _COLUMNS]
        lines.append("| " + " | ".join(cells) + " |")
    md = "\n".join(lines) + "\n"
    with open(os.path.join(workdir, "sweep_results.md"), "w") as f:
        f.write(md)
    fields = ["config", *keys, *[k for k, _, _ in _COLUMNS], "best_val_loss_epoch", "epochs_run"]
    with open(os.path.join(workdir, "sweep_results.csv"), "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=fields, extrasaction="ignore")
        w.writeheader()
        for e in entries:
            w.writerow({k: e.get(k, "") for k in fields})
    return md


# ---- main -------------------------------------------------------------------------------------
def sweep(
    config_spec: str,
    grid_specs: Sequence[str],
    *,
    workdir: str,
    points: Sequence[str] | None = None,
    overrides: Sequence[str] = (),
    table_only: bool = False,
) -> str:
    """Runs the sweep (skipping finished runs) and writes the table; returns its Markdown."""
    grid = parse_grid(grid_specs)
    base = load_config_file(config_spec)
    for item in overrides:
        key, _, value = item.partition("=")
        set_value(base, key, parse_value(value))
    for key, values in grid:
        for v in values:
            set_value(ml_collections.ConfigDict(base.to_dict()), key, v)  # fail before training
    os.makedirs(workdir, exist_ok=True)
    entries = []
    for values in grid_points(grid, points):
        name = run_name(grid, values)
        run_dir = os.path.join(workdir, name)
        if not table_only and not os.path.isfile(os.path.join(run_dir, "final_metrics.json")):
            from common.train import train_and_evaluate
            from scanline.task import ScanlineTask

            config = ml_collections.ConfigDict(base.to_dict())
            for (key, _), v in zip(grid, values):
                set_value(config, key, v)
            print(f"[sweep] {name}: training in {run_dir}", flush=True)
            train_and_evaluate(ScanlineTask, config, run_dir)
        if not os.path.isfile(os.path.join(run_dir, "metrics.jsonl")):
            print(f"[sweep] {name}: no metrics.jsonl yet, left out of the table", flush=True)
            continue
        entry = {"config": name, **{f"grid:{k}": v for (k, _), v in zip(grid, values)}}
        entry.update(summarize_run(run_dir))
        entries.append(entry)
    md = write_table(workdir, entries)
    print(md, flush=True)
    return md


def main(argv: Sequence[str] | None = None) -> None:
    argv = list(sys.argv[1:] if argv is None else argv)
    overrides = [a[len("--config.") :] for a in argv if a.startswith("--config.")]
    rest = [a for a in argv if not a.startswith("--config.")]
    parser = argparse.ArgumentParser(
        prog="python -m scanline.sweep", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--config", default="configs/scanline.py:vit_baseline")
    parser.add_argument("--grid", action="append", default=[], help="key=v1,v2,... (repeatable)")
    parser.add_argument("--point", action="append", help="one value per --grid, comma-separated")
    parser.add_argument("--workdir", help="default: checkpoints/sweep_YYYYMMDD_HHMMSS")
    parser.add_argument("--table-only", action="store_true", help="only rebuild the table")
    args = parser.parse_args(rest)
    if not args.grid:
        parser.error("give at least one --grid key=v1,v2,...")
    workdir = args.workdir or os.path.join(
        "checkpoints", "sweep_" + datetime.datetime.now().strftime("%Y%m%d_%H%M%S")
    )
    try:
        sweep(
            args.config,
            args.grid,
            workdir=workdir,
            points=args.point,
            overrides=overrides,
            table_only=args.table_only,
        )
    except ConfigError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main()
