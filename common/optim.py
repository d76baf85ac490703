"""Learning-rate schedules, the optimizer, weight-decay masks and per-group lr scales.

Schedules are optax schedules (jnp functions of the integer step), so the optimizer's step
count in the checkpoint fully determines the learning rate after a resume.

    constant          lr
    warmup_linear     linear from warmup_init_lr to lr over the warmup, then constant
    warmup_cosine     linear warmup, then half-cosine from lr down to end_lr at the last step
    cosine_restarts   linear warmup, then SGDR cycles T_k = T_0 * T_mult**k (T_mult real, e.g. 1.5),
                      each a half-cosine from lr to end_lr (eta_min)
    warmup_stable_decay  linear warmup, lr held flat, then linear decay to end_lr over the last
                      optim.decay_fraction of the run ("WSD": Hu et al. 2024, MiniCPM; Hagele
                      et al. 2024 find it matches cosine at equal steps while spending longer
                      at the peak rate)

Per-group learning-rate scales multiply a group's *update* (AdamW's decoupled weight decay
included, so a scale s is exactly lr * s, and 0 freezes the group bit for bit). Scales live in
the train state as controls (`lr_scale/<group>`), so a host-side controller can change them
without recompiling.
"""

import math
import re
from collections.abc import Mapping

import jax
import jax.numpy as jnp
import ml_collections
import optax

from common.config import ConfigError, steps_from

DEFAULT_GROUP = "default"


def _warmup(step: jax.Array, warmup_steps: int, init: float, peak: float) -> jax.Array:
    frac = jnp.clip(step / max(warmup_steps, 1), 0.0, 1.0)
    return init + (peak - init) * frac


def warmup_linear(lr: float, warmup_steps: int, init: float = 0.0) -> optax.Schedule:
    def schedule(step):
        step = jnp.asarray(step, jnp.float32)
        return jnp.where(step < warmup_steps, _warmup(step, warmup_steps, init, lr), lr)

    return schedule


def warmup_cosine(
    lr: float, warmup_steps: int, total_steps: int, init: float = 0.0, end: float = 0.0
) -> optax.Schedule:
    """Linear warmup for `warmup_steps`, then cosine from `lr` (at warmup end) to `end`
    (at `total_steps`); flat at `end` afterwards. The seed's per-epoch formula, per step."""
    decay = max(total_steps - warmup_steps, 1)

    def schedule(step):
        step = jnp.asarray(step, jnp.float32)
        progress = jnp.clip((step - warmup_steps) / decay, 0.0, 1.0)
        cosine = end + 0.5 * (lr - end) * (1.0 + jnp.cos(jnp.pi * progress))
        return jnp.where(step < warmup_steps, _warmup(step, warmup_steps, init, lr), cosine)

    return schedule


def warmup_stable_decay(
    lr: float,
    warmup_steps: int,
    total_steps: int,
    decay_fraction: float,
    init: float = 0.0,
    end: float = 0.0,
) -> optax.Schedule:
    """Linear warmup, constant `lr`, then linear decay to `end` over the last
    `decay_fraction` of `total_steps` (reaching `end` at `total_steps`, flat afterwards)."""
    if not 0.0 < decay_fraction <= 1.0:
        raise ConfigError(f"optim.decay_fraction must be in (0, 1], got {decay_fraction}")
    decay_steps = max(round(decay_fraction * total_steps), 1)
    if warmup_steps + decay_steps > total_steps:
        raise ConfigError(
            f"warmup_stable_decay: {warmup_steps} warmup + {decay_steps} decay steps exceed the "
            f"run's {total_steps} steps; shorten optim.warmup_* or optim.decay_fraction"
        )
    decay_start = total_steps - decay_steps

    def schedule(step):
        step = jnp.asarray(step, jnp.float32)
        progress = jnp.clip((step - decay_start) / decay_steps, 0.0, 1.0)
        stable_then_decay = lr + (end - lr) * progress
        return jnp.where(
            step < warmup_steps, _warmup(step, warmup_steps, init, lr), stable_then_decay
        )

    return schedule


def restart_cycle(s: jax.Array, t0: float, mult: float) -> tuple[jax.Array, jax.Array]:
    """For position `s` >= 0 after warmup: (start of the current cycle, its length)."""
    s = jnp.asarray(s, jnp.float32)
    if mult == 1.0:
        k = jnp.floor(s / t0)
        return k * t0, jnp.full_like(s, t0)
    # Cycle k starts at t0 (mult^k - 1) / (mult - 1); invert, then fix float rounding at
    # the boundaries so a restart lands exactly on its step.
    k = jnp.floor(jnp.log1p(s * (mult - 1.0) / t0) / math.log(mult))
    start = lambda k: t0 * (mult**k - 1.0) / (mult - 1.0)
    k = jnp.where(s < start(k), k - 1, k)
    k = jnp.where(s >= start(k + 1), k + 1, k)
    return start(k), t0 * mult**k


def cosine_restarts(
    lr: float,
    period_steps: float,
    mult: float = 1.0,
    end: float = 0.0,
    warmup_steps: int = 0,
    init: float = 0.0,
) -> optax.Schedule:
    """SGDR (Loshchilov & Hutter 2017) with a real-valued T_mult and an optional warmup."""
    if period_steps <= 0:
        raise ConfigError(f"cosine_restarts needs a positive period, got {period_steps} steps")
    if mult < 1.0:
        raise ConfigError(f"optim.restart_mult must be >= 1, got {mult}")

    def schedule(step):
        step = jnp.asarray(step, jnp.float32)
        s = jnp.maximum(step - warmup_steps, 0.0)
        start, length = restart_cycle(s, float(period_steps), float(mult))
        cosine = end + 0.5 * (lr - end) * (1.0 + jnp.cos(jnp.pi * (s - start) / length))
        return jnp.where(step < warmup_steps, _warmup(step, warmup_steps, init, lr), cosine)

    return schedule


def make_schedule(
    config: ml_collections.ConfigDict, *, steps_per_epoch: int, total_steps: int
) -> optax.Schedule:
    """Builds the schedule named by ``config.optim.schedule`` from epoch- or step-durations."""
    o, lr = config.optim, float(config.learning_rate)
    warmup = steps_from(
        epochs=o.warmup_epochs,
        steps=o.warmup_steps,
        steps_per_epoch=steps_per_epoch,
        what="optim.warmup",
        required=False,
    )
    warmup = warmup or 0
    name = o.schedule
    if name == "constant":
        return optax.constant_schedule(lr)
    if name == "warmup_linear":
        return warmup_linear(lr, warmup, o.warmup_init_lr)
    if name == "warmup_cosine":
        return warmup_cosine(lr, warmup, total_steps, o.warmup_init_lr, o.end_lr)
    if name == "cosine_restarts":
        if o.restart_steps is not None:
            period = float(o.restart_steps)
        elif o.restart_epochs is not None:
            period = float(o.restart_epochs) * steps_per_epoch  # fractional steps are fine
        else:
            raise ConfigError(
                "optim.schedule='cosine_restarts' needs optim.restart_epochs or _steps"
            )
        return cosine_restarts(lr, period, o.restart_mult, o.end_lr, warmup, o.warmup_init_lr)
    if name == "warmup_stable_decay":
        return warmup_stable_decay(
            lr, warmup, total_steps, o.decay_fraction, o.warmup_init_lr, o.end_lr
        )
    raise ConfigError(
        f"unknown optim.schedule '{name}'; choose one of: "
        "constant, warmup_linear, warmup_cosine, cosine_restarts, warmup_stable_decay"
    )


def path_str(path) -> str:
    """'/'-joined names of a pytree key path, e.g. 'encoder/layer_0/Dense_0/kernel'."""
    parts = []
    for key in path:
        for attr in ("key", "name", "idx"):
            if hasattr(key, attr):
                parts.append(str(getattr(key, attr)))
                break
        else:
            parts.append(str(key))
    return "/".join(parts)


def decay_mask(params, pattern: str = r"(^|/)kernel$"):
    """True where weight decay applies: matrix kernels only; biases, norm scales and
    embeddings (position/class tokens, nn.Embed tables) are not decayed."""
    rx = re.compile(pattern)
    return jax.tree_util.tree_map_with_path(lambda p, _: bool(rx.search(path_str(p))), params)


def group_assignment(params, patterns: Mapping[str, str]):
    """Pytree of group names, same structure as params: first matching regex wins."""
    compiled = [(name, re.compile(rx)) for name, rx in patterns.items()]

    def assign(path, _):
        p = path_str(path)
        for name, rx in compiled:
            if rx.search(p):
                return name
        return DEFAULT_GROUP

    return jax.tree_util.tree_map_with_path(assign, params)


def initial_lr_scales(
    config: ml_collections.ConfigDict, patterns: Mapping[str, str]
) -> dict[str, float]:
    """`lr_scale/<group>` controls from config.optim.lr_scales (default 1.0 per group)."""
    groups = [*patterns, DEFAULT_GROUP]
    scales = dict(config.optim.lr_scales)
    unknown = sorted(set(scales) - set(groups))
    if unknown:
        raise ConfigError(
            f"config.optim.lr_scales names unknown groups {unknown}; this task's groups are: "
            f"{', '.join(groups)}"
        )
    return {f"lr_scale/{g}": float(scales.get(g, 1.0)) for g in groups}


def scale_updates_by_group(updates, groups, controls: Mapping[str, jax.Array]):
    """Multiplies each leaf's update by its group's current ``lr_scale``."""
    return jax.tree.map(
        lambda u, g: (u * controls[f"lr_scale/{g}"]).astype(u.dtype), updates, groups
    )


def make_optimizer(
    config: ml_collections.ConfigDict, schedule: optax.Schedule, params
) -> optax.GradientTransformation:
    """Clip-by-global-norm (optional) followed by AdamW / Adam / SGD on `schedule`."""
    o = config.optim
    mu_dtype = jnp.dtype(o.mu_dtype) if o.mu_dtype else None
    if o.name == "adamw":
        inner = optax.adamw(
            schedule,
            b1=o.b1,
            b2=o.b2,
            eps=o.eps,
            weight_decay=o.weight_decay,
            mask=decay_mask(params),
            mu_dtype=mu_dtype,
        )
    elif o.name == "adam":
        inner = optax.adam(schedule, b1=o.b1, b2=o.b2, eps=o.eps, mu_dtype=mu_dtype)
    elif o.name == "sgd":
        inner = optax.sgd(schedule, momentum=o.b1 or None)
    else:
        raise ConfigError(f"unknown optim.name '{o.name}'; choose one of: adamw, adam, sgd")
    if o.grad_clip is not None:
        if o.grad_clip <= 0:
            raise ConfigError(
                f"optim.grad_clip must be > 0 (or None to disable), got {o.grad_clip}"
            )
        return optax.chain(optax.clip_by_global_norm(o.grad_clip), inner)
    return inner
