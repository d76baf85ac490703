"""Which evaluation was best so far, and whether training should stop early.

The loop feeds every periodic evaluation to one `BestRecord`; the record says whether the
value is the new best (the checkpoint that `final_eval_splits` uses is orbax's best by the
same metric and the same tie rule) and whether early stopping's patience has run out. Its
whole state goes into each checkpoint's metadata (`to_meta` / `from_meta`), so a resumed run
continues the same count.
"""

import dataclasses
import logging

import ml_collections

from common.config import ConfigError


def _check_mode(mode: str, what: str) -> str:
    if mode not in ("max", "min"):
        raise ConfigError(f"{what} must be 'max' or 'min', got '{mode}'")
    return mode


@dataclasses.dataclass
class BestRecord:
    """Best value of `metric` (ties go to the later step, as orbax's BestN keeps them) and,
    when `patience` > 0, evaluations since `stop_metric` last improved by more than
    `min_delta`."""

    metric: str
    mode: str
    stop_metric: str
    stop_mode: str
    patience: int = 0
    min_delta: float = 0.0
    value: float | None = None
    step: int | None = None
    stop_best: float | None = None
    bad_evals: int = 0

    @classmethod
    def from_config(
        cls, config: ml_collections.ConfigDict, default: tuple[str, str]
    ) -> "BestRecord":
        """The record `config` asks for: `best_metric`/`best_mode`, else the task's `default`
        (name, mode); `early_stopping.*`."""
        metric = config.best_metric or default[0]
        mode = _check_mode(config.best_mode or default[1], "best_mode")
        es = config.early_stopping
        return cls(
            metric=metric,
            mode=mode,
            stop_metric=es.metric or metric,
            stop_mode=_check_mode(es.mode or mode, "early_stopping.mode"),
            patience=int(es.patience),
            min_delta=float(es.min_delta),
        )

    def restore(self, meta: dict) -> None:
        """Continues from a checkpoint's metadata (what `to_meta` wrote)."""
        best, early = meta.get("best") or {}, meta.get("early_stopping") or {}
        self.value, self.step = best.get("value"), best.get("step")
        self.stop_best, self.bad_evals = early.get("best"), int(early.get("bad_evals", 0))

    def observe(self, step: int, metrics: dict[str, float]) -> bool:
        """Records one evaluation's flat metrics ({"val/accuracy": ...}); True when it is the
        best so far."""
        improved = False
        value = metrics.get(self.metric)
        if value is None:
            logging.warning("best metric '%s' is not among %s", self.metric, sorted(metrics))
        elif self.value is None or (
            value >= self.value if self.mode == "max" else value <= self.value
        ):
            self.value, self.step, improved = float(value), int(step), True
        watched = metrics.get(self.stop_metric)
        if self.patience > 0 and watched is not None:
            if self.stop_best is None or (
                watched > self.stop_best + self.min_delta
                if self.stop_mode == "max"
                else watched < self.stop_best - self.min_delta
            ):
                self.stop_best, self.bad_evals = float(watched), 0
            else:
                self.bad_evals += 1
        return improved

    @property
    def patience_ran_out(self) -> bool:
        return self.patience > 0 and self.bad_evals >= self.patience

    def to_meta(self) -> dict:
        """What a checkpoint stores (the keys older checkpoints already have)."""
        return {
            "best": {"metric": self.metric, "value": self.value, "step": self.step},
            "early_stopping": {"best": self.stop_best, "bad_evals": self.bad_evals},
        }
