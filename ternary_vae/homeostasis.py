"""Homeostasis: freezes and unfreezes the two encoders from evaluation metrics (host side).

A re-implementation of the original's `HomeostasisController` (v5.12.5) without its inert
controller branch, driving the shared loop's per-group learning-rate scales instead of
rebuilding an optimizer: a frozen encoder gets ``lr_scale/<group> = 0``. Called from
`Task.on_eval` after every evaluation; its whole state is a JSON dict saved in each checkpoint.

Rules (window W evaluations, plateau threshold eps, hysteresis H epochs per component):

- encoder A (coverage-gated): unfrozen and coverage < freeze_threshold -> freeze.
  Frozen, coverage >= unfreeze_threshold and H_A stalled (|H_A| gained < eps over the window
  for `patience` evaluations in a row) -> unfreeze at `encoder_a_unfreeze_lr_scale`.
- encoder B (hierarchy-gated): unfrozen and |H_B| gained < eps over the window for
  `patience_b` evaluations in a row -> freeze. Frozen and |H_B| fell by > unfreeze_drop
  since the previous evaluation -> unfreeze at `encoder_b_lr_scale`.
- Q-gated annealing when a component closes a cycle (unfrozen -> frozen), with Q = Q_B:
  Q above its value at the cycle's start -> relax (A: both coverage thresholds - step, never
  below the floor; B: patience_b + 1 up to the ceiling); Q fell by more than `tighten_dq`
  -> tighten the opposite way.
- Nothing happens before `start_epoch`; each component waits `hysteresis_epochs` between its
  own changes.
"""

from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass
class HomeostasisConfig:
    start_epoch: float = 5.0
    hysteresis_epochs: float = 3.0
    window: int = 5
    plateau_threshold: float = 0.001
    patience: int = 5  # "annealing_patience" of the YAML = hierarchy_plateau_patience
    patience_max: int = 15
    coverage_freeze_threshold: float = 0.995
    coverage_unfreeze_threshold: float = 1.0
    coverage_floor: float = 0.95
    unfreeze_drop: float = 0.01
    annealing: bool = True
    annealing_step: float = 0.003
    tighten_dq: float = 0.05
    encoder_a_unfreeze_lr_scale: float = 0.05
    encoder_b_lr_scale: float = 0.1


@dataclass
class _Component:
    frozen: bool
    last_change_epoch: float = -1e9
    plateau_count: int = 0
    q_at_unfreeze: float | None = None


@dataclass
class HomeostasisState:
    encoder_a: _Component = field(default_factory=lambda: _Component(frozen=True))
    encoder_b: _Component = field(default_factory=lambda: _Component(frozen=False))
    freeze_threshold: float = 0.995
    unfreeze_threshold: float = 1.0
    patience_b: int = 5
    h_a_history: list[float] = field(default_factory=list)
    h_b_history: list[float] = field(default_factory=list)
    events: list[str] = field(default_factory=list)


class Homeostasis:
    """Stateful controller; `update` returns the new lr scales and what changed."""

    def __init__(
        self,
        config: HomeostasisConfig,
        *,
        encoder_a_frozen: bool = True,
        encoder_b_frozen: bool = False,
    ):
        self.config = config
        self.state = HomeostasisState(
            encoder_a=_Component(frozen=encoder_a_frozen),
            encoder_b=_Component(frozen=encoder_b_frozen),
            freeze_threshold=config.coverage_freeze_threshold,
            unfreeze_threshold=config.coverage_unfreeze_threshold,
            patience_b=config.patience,
        )

    # ---- persistence -------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        return asdict(self.state)

    def load_state_dict(self, state: dict[str, Any]) -> None:
        state = dict(state)
        state["encoder_a"] = _Component(**state["encoder_a"])
        state["encoder_b"] = _Component(**state["encoder_b"])
        self.state = HomeostasisState(**state)

    # ---- control -----------------------------------------------------------------------------
    def lr_scales(self) -> dict[str, float]:
        s, c = self.state, self.config
        return {
            "encoder_a": 0.0 if s.encoder_a.frozen else c.encoder_a_unfreeze_lr_scale,
            "encoder_b": 0.0 if s.encoder_b.frozen else c.encoder_b_lr_scale,
        }

    def update(
        self, *, epoch: float, coverage: float, h_a: float, h_b: float, q: float
    ) -> list[str]:
        """Feeds one evaluation; returns human-readable descriptions of every change made."""
        s, c = self.state, self.config
        previous_h_b = s.h_b_history[-1] if s.h_b_history else None
        s.h_a_history = ([*s.h_a_history, abs(h_a)])[-(c.window + 1) :]
        s.h_b_history = ([*s.h_b_history, abs(h_b)])[-(c.window + 1) :]
        if epoch < c.start_epoch:
            return []
        changes: list[str] = []

        # Plateau counters: |H| gained less than eps over the last `window` evaluations.
        a_plateau = self._stalled(s.h_a_history)
        b_plateau = self._stalled(s.h_b_history)
        s.encoder_a.plateau_count = s.encoder_a.plateau_count + 1 if a_plateau else 0
        if not s.encoder_b.frozen:
            s.encoder_b.plateau_count = s.encoder_b.plateau_count + 1 if b_plateau else 0

        a = s.encoder_a
        if self._may_change(a, epoch):
            if not a.frozen and coverage < s.freeze_threshold:
                changes.append(
                    f"froze encoder_a: coverage {coverage:.5f} < {s.freeze_threshold:.4f}"
                )
                self._close_cycle("encoder_a", a, epoch, q, changes)
            elif a.frozen and coverage >= s.unfreeze_threshold and a.plateau_count >= c.patience:
                changes.append(
                    f"unfroze encoder_a (lr scale {c.encoder_a_unfreeze_lr_scale}): coverage "
                    f"{coverage:.5f} >= {s.unfreeze_threshold:.4f} and |H_A| stalled for "
                    f"{a.plateau_count} evaluations"
                )
                self._open_cycle(a, epoch, q)

        b = s.encoder_b
        if self._may_change(b, epoch):
            if not b.frozen and b.plateau_count >= s.patience_b:
                changes.append(
                    f"froze encoder_b: |H_B| gained < {c.plateau_threshold} over {c.window} "
                    f"evaluations, {b.plateau_count} times in a row (patience {s.patience_b})"
                )
                self._close_cycle("encoder_b", b, epoch, q, changes)
            elif (
                b.frozen and previous_h_b is not None and previous_h_b - abs(h_b) > c.unfreeze_drop
            ):
                changes.append(
                    f"unfroze encoder_b (lr scale {c.encoder_b_lr_scale}): |H_B| fell "
                    f"{previous_h_b:.4f} -> {abs(h_b):.4f}"
                )
                self._open_cycle(b, epoch, q)

        s.events.extend(f"epoch {epoch:g}: {m}" for m in changes)
        return changes

    # ---- helpers -----------------------------------------------------------------------------
    def _stalled(self, history: list[float]) -> bool:
        w = self.config.window
        return len(history) > w and history[-1] - history[-1 - w] < self.config.plateau_threshold

    def _may_change(self, comp: _Component, epoch: float) -> bool:
        return epoch - comp.last_change_epoch >= self.config.hysteresis_epochs

    def _open_cycle(self, comp: _Component, epoch: float, q: float) -> None:
        comp.frozen, comp.last_change_epoch, comp.plateau_count = False, epoch, 0
        comp.q_at_unfreeze = q

    def _close_cycle(
        self, name: str, comp: _Component, epoch: float, q: float, changes: list[str]
    ) -> None:
        comp.frozen, comp.last_change_epoch, comp.plateau_count = True, epoch, 0
        start_q, comp.q_at_unfreeze = comp.q_at_unfreeze, None
        if not self.config.annealing or start_q is None:
            return
        s, c = self.state, self.config
        dq = q - start_q
        if name == "encoder_a":
            if dq > 0:
                new_f = max(c.coverage_floor, s.freeze_threshold - c.annealing_step)
                new_u = max(c.coverage_floor, s.unfreeze_threshold - c.annealing_step)
                verb = "relaxed"
            elif dq < -c.tighten_dq:
                new_f = min(1.0, s.freeze_threshold + c.annealing_step)
                new_u = min(1.0, s.unfreeze_threshold + c.annealing_step)
                verb = "tightened"
            else:
                return
            changes.append(
                f"annealing ({verb}, dQ {dq:+.4f}): encoder_a coverage thresholds "
                f"freeze {s.freeze_threshold:.4f}->{new_f:.4f}, "
                f"unfreeze {s.unfreeze_threshold:.4f}->{new_u:.4f}"
            )
            s.freeze_threshold, s.unfreeze_threshold = new_f, new_u
        else:
            if dq > 0:
                new_p, verb = min(c.patience_max, s.patience_b + 1), "relaxed"
            elif dq < -c.tighten_dq:
                new_p, verb = max(1, s.patience_b - 1), "tightened"
            else:
                return
            changes.append(
                f"annealing ({verb}, dQ {dq:+.4f}): encoder_b patience {s.patience_b}->{new_p}"
            )
            s.patience_b = new_p
