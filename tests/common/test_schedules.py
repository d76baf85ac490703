"""Schedules against their closed forms at the boundaries that matter."""

import math

import ml_collections
import numpy as np
import pytest

from common import optim
from common.config import ConfigError, base_config


def lr_at(schedule, step: int) -> float:
    return float(schedule(step))


def test_warmup_cosine_matches_the_seed_formula():
    # Seed 001: lr = peak * e / warmup during warmup, then peak * 0.5 (1 + cos(pi progress)).
    peak, warmup, total = 3e-4, 50, 1000
    s = optim.warmup_cosine(peak, warmup, total)
    assert lr_at(s, 0) == 0.0
    assert lr_at(s, 25) == pytest.approx(peak * 25 / 50, rel=1e-6)
    assert lr_at(s, warmup) == pytest.approx(peak, rel=1e-6)  # warmup end = peak
    for step in (100, 525, 999):
        progress = (step - warmup) / (total - warmup)
        expected = peak * 0.5 * (1 + math.cos(math.pi * progress))
        assert lr_at(s, step) == pytest.approx(expected, rel=1e-5, abs=peak * 1e-5)
    assert lr_at(s, total) == pytest.approx(0.0, abs=1e-12)  # floor
    assert lr_at(s, total + 10) == pytest.approx(0.0, abs=1e-12)


def test_warmup_cosine_floor_and_start_value():
    s = optim.warmup_cosine(1.0, 10, 110, init=0.1, end=0.05)
    assert lr_at(s, 0) == pytest.approx(0.1)
    assert lr_at(s, 5) == pytest.approx(0.55)
    assert lr_at(s, 60) == pytest.approx(0.05 + 0.5 * 0.95, rel=1e-6)  # halfway
    assert lr_at(s, 110) == pytest.approx(0.05, rel=1e-6)


def test_warmup_linear_from_a_start_value():
    # scanline: 1e-6 -> 1e-4 over 5 epochs, then constant.
    s = optim.warmup_linear(1e-4, 500, init=1e-6)
    assert lr_at(s, 0) == pytest.approx(1e-6)
    assert lr_at(s, 250) == pytest.approx(1e-6 + 0.5 * (1e-4 - 1e-6), rel=1e-6)
    assert lr_at(s, 500) == pytest.approx(1e-4, rel=1e-6)
    assert lr_at(s, 10_000) == pytest.approx(1e-4, rel=1e-6)


@pytest.mark.parametrize("mult", [1.0, 1.5, 2.0])
def test_cosine_restarts_hit_each_restart_exactly(mult):
    lr, t0, end, warmup = 8e-4, 100.0, 1e-6, 20
    s = optim.cosine_restarts(lr, t0, mult, end=end, warmup_steps=warmup)
    starts, length = [0.0], t0
    for _ in range(4):
        starts.append(starts[-1] + length)
        length *= mult
    for k, start in enumerate(starts[:-1]):
        cycle = t0 * mult**k
        first = warmup + math.ceil(start)
        # At (or just after) each restart the rate is back at the peak ...
        expected = end + 0.5 * (lr - end) * (
            1 + math.cos(math.pi * (first - warmup - start) / cycle)
        )
        assert lr_at(s, first) == pytest.approx(expected, rel=1e-5)
        # ... and halfway through a cycle it is the midpoint.
        mid = warmup + start + cycle / 2
        if mid == int(mid):
            assert lr_at(s, int(mid)) == pytest.approx((lr + end) / 2, rel=1e-5)
        # Just before the next restart it is near the floor.
        last = warmup + math.ceil(starts[k + 1]) - 1
        assert lr_at(s, last) < lr * 0.01 + end


def test_cosine_restarts_real_t_mult_matches_ternary_spec():
    # ternary_vae's YAML: warmup 5 epochs, T_0 = 25 epochs, T_mult = 1.5 -> cycles start at
    # epochs 5, 30, 67.5, 123.75; epoch 120 is 93 % into the third cycle, lr ~ 1.0e-5.
    spe = 100  # steps per epoch
    s = optim.cosine_restarts(8e-4, 25 * spe, 1.5, end=1e-6, warmup_steps=5 * spe)
    assert lr_at(s, 5 * spe) == pytest.approx(8e-4, rel=1e-6)
    assert lr_at(s, 30 * spe) == pytest.approx(8e-4, rel=1e-6)
    assert lr_at(s, 6750) == pytest.approx(8e-4, rel=1e-6)
    frac = (120 - 67.5) / 56.25
    expected = 1e-6 + 0.5 * (8e-4 - 1e-6) * (1 + math.cos(math.pi * frac))
    assert lr_at(s, 120 * spe) == pytest.approx(expected, rel=1e-4)
    assert lr_at(s, 120 * spe) == pytest.approx(1.0e-5, rel=0.15)


def test_restart_cycle_index_stays_right_for_long_runs():
    # 25 cycles of T_mult 1.5 reach ~2e5 steps; half a step either side of every restart must
    # land in the right cycle despite float32.
    starts = [0.0]
    for k in range(25):
        starts.append(starts[-1] + 10 * 1.5**k)
    for k, st in enumerate(starts[1:-1], start=1):
        after_start, after_len = optim.restart_cycle(np.float32(st + 0.5), 10.0, 1.5)
        before_start, _ = optim.restart_cycle(np.float32(st - 0.5), 10.0, 1.5)
        assert float(after_start) == pytest.approx(st, rel=1e-5)
        assert float(after_len) == pytest.approx(10 * 1.5**k, rel=1e-5)
        assert float(before_start) == pytest.approx(starts[k - 1], rel=1e-5)


def test_warmup_stable_decay_at_its_corners():
    # 100 warmup steps, flat at the peak, then the last 20 % of 1,000 steps (800 -> 1,000)
    # decays linearly from 2e-3 to 1e-5.
    peak, end = 2e-3, 1e-5
    s = optim.warmup_stable_decay(peak, 100, 1000, 0.2, end=end)
    assert lr_at(s, 0) == 0.0
    assert lr_at(s, 50) == pytest.approx(peak / 2, rel=1e-6)
    for step in (100, 450, 800):
        assert lr_at(s, step) == pytest.approx(peak, rel=1e-6)
    assert lr_at(s, 850) == pytest.approx(peak + (end - peak) * 0.25, rel=1e-5)
    assert lr_at(s, 900) == pytest.approx((peak + end) / 2, rel=1e-5)
    assert lr_at(s, 1000) == pytest.approx(end, rel=1e-5)
    assert lr_at(s, 1200) == pytest.approx(end, rel=1e-5)


def test_warmup_stable_decay_refuses_an_impossible_split():
    with pytest.raises(ConfigError, match="decay_fraction must be in"):
        optim.warmup_stable_decay(1.0, 0, 100, 0.0)
    with pytest.raises(ConfigError, match="exceed the run's 100 steps"):
        optim.warmup_stable_decay(1.0, 90, 100, 0.2)
    c = _cfg(schedule="warmup_stable_decay", warmup_steps=10, decay_fraction=0.5)
    s = optim.make_schedule(c, steps_per_epoch=10, total_steps=100)
    assert lr_at(s, 50) == pytest.approx(1.0)
    assert lr_at(s, 75) == pytest.approx(0.5, rel=1e-6)


def _cfg(**optim_fields) -> ml_collections.ConfigDict:
    c = base_config()
    c.learning_rate = 1.0
    for k, v in optim_fields.items():
        c.optim[k] = v
    return c


def test_make_schedule_converts_epochs_to_steps():
    c = _cfg(schedule="warmup_cosine", warmup_epochs=2.0)
    s = optim.make_schedule(c, steps_per_epoch=10, total_steps=100)
    assert lr_at(s, 20) == pytest.approx(1.0)
    assert lr_at(s, 10) == pytest.approx(0.5)
    c = _cfg(schedule="cosine_restarts", restart_epochs=2.5, restart_mult=1.0)
    s = optim.make_schedule(c, steps_per_epoch=10, total_steps=100)
    assert lr_at(s, 25) == pytest.approx(1.0)  # restart after 2.5 epochs = 25 steps


def test_make_schedule_rejects_bad_settings():
    with pytest.raises(ConfigError, match=r"unknown optim\.schedule 'cosin'"):
        optim.make_schedule(_cfg(schedule="cosin"), steps_per_epoch=10, total_steps=10)
    with pytest.raises(ConfigError, match="restart_epochs or _steps"):
        optim.make_schedule(_cfg(schedule="cosine_restarts"), steps_per_epoch=10, total_steps=10)
    s = optim.make_schedule(
        _cfg(schedule="warmup_linear", warmup_epochs=1.0, warmup_steps=4),
        steps_per_epoch=10,
        total_steps=10,
    )
    assert lr_at(s, 2) == pytest.approx(0.5)  # warmup_steps wins over warmup_epochs
