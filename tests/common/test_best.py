"""The best-evaluation record and the one cadence predicate the loop and hooks share."""

import pytest

from common.best import BestRecord
from common.config import ConfigError, due
from tests.common.conftest import make_config


def record(**overrides) -> BestRecord:
    return BestRecord.from_config(make_config(**overrides), ("val/accuracy", "max"))


def test_best_is_the_latest_of_equal_values_and_survives_a_restore():
    r = record()
    assert [r.observe(s, {"val/accuracy": a}) for s, a in [(4, 0.5), (8, 0.7), (12, 0.7)]] == [
        True,
        True,
        True,  # a tie goes to the later step, as orbax's BestN keeps it
    ]
    assert not r.observe(16, {"val/accuracy": 0.6})
    assert (r.value, r.step) == (0.7, 12)
    again = record()
    again.restore(r.to_meta())
    assert (again.value, again.step, again.metric) == (0.7, 12, "val/accuracy")


def test_min_mode_and_a_missing_metric():
    r = record(best_metric="val/loss", best_mode="min")
    assert r.observe(1, {"val/loss": 2.0}) and r.observe(2, {"val/loss": 1.0})
    assert not r.observe(3, {"val/loss": 1.5}) and not r.observe(4, {"val/other": 0.0})
    assert (r.value, r.step) == (1.0, 2)


def test_early_stopping_counts_evals_without_a_real_improvement():
    r = record(**{"early_stopping.patience": 2, "early_stopping.min_delta": 0.05})
    r.observe(1, {"val/accuracy": 0.50})
    r.observe(2, {"val/accuracy": 0.53})  # better, but not by min_delta
    assert r.bad_evals == 1 and not r.patience_ran_out
    r.observe(3, {"val/accuracy": 0.60})  # by more than min_delta: the count restarts
    assert r.bad_evals == 0 and r.stop_best == 0.60
    r.observe(4, {"val/accuracy": 0.6})
    r.observe(5, {"val/accuracy": 0.1})
    assert r.patience_ran_out
    resumed = record(**{"early_stopping.patience": 2})
    resumed.restore(r.to_meta())
    assert resumed.patience_ran_out
    # Another metric watched for stopping, in its own direction.
    loss = record(**{"early_stopping.patience": 1, "early_stopping.metric": "val/loss",
                     "early_stopping.mode": "min"})  # fmt: skip
    loss.observe(1, {"val/accuracy": 0.1, "val/loss": 1.0})
    loss.observe(2, {"val/accuracy": 0.9, "val/loss": 1.2})
    assert loss.patience_ran_out and loss.step == 2


def test_modes_other_than_max_and_min_are_refused():
    with pytest.raises(ConfigError, match="best_mode must be 'max' or 'min', got 'up'"):
        record(best_mode="up")
    with pytest.raises(ConfigError, match=r"early_stopping\.mode"):
        record(**{"early_stopping.mode": "lower"})


def test_due_every_n_steps_and_at_the_end():
    assert [s for s in range(1, 11) if due(s, 4, 10)] == [4, 8, 10]
    assert [s for s in range(1, 11) if due(s, 4, 10, at_end=False)] == [4, 8]
    assert [s for s in range(1, 11) if due(s, None, 10)] == [10]
    assert [s for s in range(1, 11) if due(s, 0, 10, at_end=False)] == []
    assert [s for s in range(1, 7) if due(s, 1, 6)] == [1, 2, 3, 4, 5, 6]
