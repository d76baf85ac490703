"""Summarise and compare runs from their metrics.jsonl: `python -m common.analyze`.

    python -m common.analyze RUN_DIR [RUN_DIR ...] [--out DIR] [--metric val/accuracy ...]

For each run and each split (train, val, test, final, ...): the best and the latest value of
every metric, with the step and epoch where it happened (what the Rust original's `analyze`
binary printed). Then a comparison table across runs, and one PNG per metric with every run's
curve. "Best" is the minimum for losses/errors/perplexities and the maximum otherwise;
`perf/*`, learning rate, gradient norm and checkpoint step only report their latest value.
"""

import argparse
import json
import os
import sys
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass

from common.writers import METRICS_FILE

_LOWER_IS_BETTER = ("loss", "error", "perplexity", "nll", "fid", "mse")
# Bookkeeping, not quality: only their latest value is reported.
_NO_BEST = ("learning_rate", "grad_norm")
# Bookkeeping a reader does not compare runs by: left out of reports, tables and plots.
_LEFT_OUT = ("eta_minutes", "checkpoint_step")


def lower_is_better(key: str) -> bool:
    name = key.rsplit("/", 1)[-1].lower()
    return any(token in name for token in _LOWER_IS_BETTER)


@dataclass
class Point:
    step: int
    epoch: float | None
    value: float


@dataclass
class MetricSummary:
    key: str
    best: Point | None  # None for perf/* and other bookkeeping keys
    latest: Point
    points: list[Point]


def read_metrics(run_dir: str) -> dict[str, list[Point]]:
    """metrics.jsonl -> key -> points in step order (non-numeric values skipped)."""
    path = os.path.join(run_dir, METRICS_FILE)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"no {METRICS_FILE} in '{run_dir}': is it a run directory?")
    series: dict[str, list[Point]] = defaultdict(list)
    with open(path) as f:
        for line_no, line in enumerate(f, 1):
            line = line.strip()
            if not line:
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as e:
                raise ValueError(f"{path}:{line_no}: not JSON ({e})") from e
            step, epoch = int(record.get("step", 0)), record.get("epoch")
            for key, value in record.items():
                if key in ("step", "epoch") or isinstance(value, (str, bool)) or value is None:
                    continue
                series[key].append(Point(step, epoch, float(value)))
    for points in series.values():
        points.sort(key=lambda p: p.step)  # stable: a resumed run's later record wins ties
    return dict(series)


def summarise(series: dict[str, list[Point]]) -> dict[str, MetricSummary]:
    out = {}
    for key, points in sorted(series.items()):
        if key.endswith(_LEFT_OUT):
            continue
        best = None
        if not key.startswith("perf/") and not key.endswith(_NO_BEST):
            pick = min if lower_is_better(key) else max
            best = pick(points, key=lambda p: p.value)
        out[key] = MetricSummary(key, best, points[-1], points)
    return out


def split_of(key: str) -> str:
    parts = key.split("/")
    return "/".join(parts[:2]) if parts[0] == "final" and len(parts) > 2 else parts[0]


def _fmt_point(p: Point | None) -> tuple[str, str, str]:
    if p is None:
        return "-", "", ""
    epoch = "" if p.epoch is None else f"{p.epoch:.2f}"
    return f"{p.value:.6g}", str(p.step), epoch


def run_report(run_dir: str, summaries: dict[str, MetricSummary]) -> str:
    lines = [f"## {run_dir}", ""]
    header = "| split | metric | best | step | epoch | latest | step | epoch |"
    by_split: dict[str, list[MetricSummary]] = defaultdict(list)
    for s in summaries.values():
        by_split[split_of(s.key)].append(s)
    lines += [header, "|" + "---|" * 8]
    for split in sorted(by_split):
        for s in by_split[split]:
            name = s.key[len(split) + 1 :]
            lines.append(
                f"| {split} | {name} | {' | '.join(_fmt_point(s.best))} | "
                f"{' | '.join(_fmt_point(s.latest))} |"
            )
    return "\n".join(lines)


def comparison_table(runs: dict[str, dict[str, MetricSummary]], keys: Sequence[str]) -> str:
    """Rows = runs; columns = best (latest for final/*) of each key."""
    lines = ["| run | " + " | ".join(keys) + " |", "|---|" + "---|" * len(keys)]
    for run_dir, summaries in runs.items():
        cells = []
        for key in keys:
            s = summaries.get(key)
            if s is None:
                cells.append("-")
            else:
                p = s.best or s.latest
                cells.append(f"{p.value:.4g} (step {p.step})")
        lines.append(f"| {run_dir} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def default_keys(runs: dict[str, dict[str, MetricSummary]]) -> list[str]:
    """Eval and final metrics present in any run (train and perf keys left out)."""
    keys = set()
    for summaries in runs.values():
        keys |= {k for k in summaries if not k.startswith(("train/", "perf/"))}
    return sorted(keys)


def plot_curves(runs: dict[str, dict[str, MetricSummary]], out_dir: str) -> list[str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    os.makedirs(out_dir, exist_ok=True)
    keys = sorted({k for s in runs.values() for k, m in s.items() if len(m.points) > 1})
    paths = []
    for key in keys:
        fig, ax = plt.subplots(figsize=(6, 4))
        for run_dir, summaries in runs.items():
            if key in summaries:
                pts = summaries[key].points
                ax.plot([p.step for p in pts], [p.value for p in pts], label=run_dir)
        ax.set_xlabel("step")
        ax.set_ylabel(key)
        ax.set_title(key)
        ax.grid(alpha=0.3)
        if len(runs) > 1:
            ax.legend(fontsize=7)
        path = os.path.join(out_dir, key.replace("/", "_") + ".png")
        fig.tight_layout()
        fig.savefig(path, dpi=100)
        plt.close(fig)
        paths.append(path)
    return paths


def analyze(
    run_dirs: Sequence[str], out_dir: str | None = None, keys: Sequence[str] | None = None
) -> str:
    """Returns the Markdown report; writes it plus curve PNGs under `out_dir`."""
    runs = {d: summarise(read_metrics(d)) for d in run_dirs}
    parts = ["# Runs", ""]
    parts += [run_report(d, s) + "\n" for d, s in runs.items()]
    parts += ["## Comparison", "", comparison_table(runs, list(keys or default_keys(runs)))]
    report = "\n".join(parts) + "\n"
    out_dir = out_dir or os.path.join(run_dirs[0], "analysis")
    pngs = plot_curves(runs, out_dir)
    with open(os.path.join(out_dir, "report.md"), "w") as f:
        f.write(report)
    report += f"\nwrote {os.path.join(out_dir, 'report.md')} and {len(pngs)} plots in {out_dir}\n"
    return report


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("runs", nargs="+", help="run directories (with metrics.jsonl)")
    parser.add_argument("--out", help="where report.md and the PNGs go (default RUN/analysis)")
    parser.add_argument("--metric", action="append", help="columns of the comparison table")
    args = parser.parse_args(argv)
    try:
        print(analyze(args.runs, args.out, args.metric))
    except (FileNotFoundError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
