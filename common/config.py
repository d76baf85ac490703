"""Shared configuration: the fields every family's config has, profile parsing, durations.

Each `configs/<family>.py` starts from `base_config()` and sets its own fields. Field names
follow the seeds' command-line flags where they exist (`batch_size`, `learning_rate`,
`max_epochs`, `max_training_hours`, `resume_from`; model sizes live under `model.`).
Optional fields use `placeholder(type)` so `--config.max_steps=1000` can set a field whose
default is None.
"""

import difflib
import logging
import re
from collections.abc import Mapping, Sequence
from typing import Any

import ml_collections
from ml_collections import config_dict

P = config_dict.placeholder


class ConfigError(ValueError):
    """A configuration value is invalid; the message says which and how to fix it."""


def base_config() -> ml_collections.ConfigDict:
    """Fields every family shares. Families override values, never remove fields."""
    c = ml_collections.ConfigDict()
    c.task = ""  # "module:Class" of the family's Task (set by each config file)
    c.profile = ""  # the profile name this config was built from (recorded in config.json)
    c.seed = 0

    # --- devices, parallelism, precision
    c.platform = "auto"  # "auto" | "cpu" | "gpu" | "tpu": a requested accelerator must exist
    c.parallel = "jit"  # "jit" (device mesh, recommended) | "pmap" (legacy, same results)
    c.num_devices = P(int)  # use only the first N devices (single process); None = all
    c.distributed = "auto"  # "auto" (SLURM/OMPI/TPU pod detection) | "on" | "off"
    c.dtype = "auto"  # compute dtype: "auto" (bf16 on GPU/TPU, f32 on CPU) | "float32" | "bfloat16"
    c.compilation_cache_dir = "~/.cache/jaxfam/xla"  # "" disables JAX's persistent cache

    # --- data
    c.data_dir = P(str)  # TFDS data_dir or a family's data folder
    c.batch_size = 128  # GLOBAL train batch, split over all devices of all processes
    # Split each batch into this many micro-batches (a lax.scan inside the step) and average
    # their gradients: the same update with 1/N of the activation memory. Losses that use
    # batch statistics (BatchNorm, in-batch ranks) see micro-batches instead.
    c.grad_accum_steps = 1
    c.eval_batch_size = P(int)  # GLOBAL eval batch; None -> batch_size
    c.prefetch = 2  # device batches kept ready by the input thread

    # --- duration (set exactly one of max_epochs / max_steps)
    c.max_epochs = P(float)
    c.max_steps = P(int)  # wins over max_epochs when both are set (same for every *_steps)
    c.max_training_hours = P(float)  # wall-clock budget of one invocation; saves then exits
    c.stop_after_steps = P(int)  # simulate preemption: save and exit after this many steps

    # --- optimiser
    c.learning_rate = 1e-3  # peak learning rate
    c.optim = ml_collections.ConfigDict()
    c.optim.name = "adamw"  # "adamw" | "adam" | "sgd"
    c.optim.b1 = 0.9
    c.optim.b2 = 0.999
    c.optim.eps = 1e-8
    c.optim.weight_decay = 0.0  # decoupled; masked to kernels (no biases, norms, embeddings)
    c.optim.grad_clip = P(float)  # clip by global norm; None = off
    # constant | warmup_linear | warmup_cosine | cosine_restarts | warmup_stable_decay
    c.optim.schedule = "constant"
    c.optim.warmup_epochs = P(float)
    c.optim.warmup_steps = P(int)
    c.optim.warmup_init_lr = 0.0  # linear warmup starts here
    c.optim.end_lr = 0.0  # floor of cosine / cosine-with-restarts (eta_min)
    c.optim.restart_epochs = P(float)  # first cosine cycle length T_0 (epochs) ...
    c.optim.restart_steps = P(int)  # ... or steps
    c.optim.restart_mult = 1.0  # T_mult: cycle k lasts T_0 * T_mult**k (real-valued)
    c.optim.decay_fraction = 0.2  # warmup_stable_decay: share of the run spent decaying
    c.optim.lr_scales = ml_collections.ConfigDict()  # group -> scale (0 freezes the group)
    c.optim.mu_dtype = P(str)  # e.g. "bfloat16" for Adam's first moment (memory)

    # --- evaluation, checkpoints, logging
    c.eval_every_epochs = 1.0
    c.eval_every_steps = P(int)  # overrides eval_every_epochs
    c.final_eval_splits = ()  # evaluated once at the end with the best checkpoint
    c.best_metric = P(str)  # overrides the task's metric, e.g. "val/accuracy"
    c.best_mode = P(str)  # "max" | "min"
    c.checkpoint_every_epochs = P(float)  # periodic checkpoints kept in addition to latest/best
    c.checkpoint_every_steps = P(int)
    c.resume_from = P(str)  # a workdir, its checkpoints/ folder, or one step folder
    # params only (same forms; a run directory gives its best evaluated step), mapped by
    # Task.init_from_params
    c.init_from = P(str)
    # A damaged latest checkpoint (unreadable metadata, a missing item, a truncated file):
    # "use_older" moves it to WORKDIR/damaged_checkpoints/ and resumes from the newest intact
    # step; "refuse" stops with a message and touches nothing.
    c.on_damaged_checkpoint = "use_older"
    c.log_every_steps = 50
    c.wandb_project = ""  # Weights & Biases project ([wandb] extra); "" = off
    c.wandb_entity = ""  # W&B team or user; "" = your default
    c.ema_decay = 0.0  # > 0 keeps an EMA of params; evaluation/sampling use it
    c.early_stopping = ml_collections.ConfigDict()
    c.early_stopping.patience = 0  # evaluations without improvement; 0 = off
    c.early_stopping.metric = P(str)  # default: the best-checkpoint metric
    c.early_stopping.mode = P(str)
    c.early_stopping.min_delta = 0.0
    c.profile_steps = 0  # > 0: write a jax.profiler trace of this many steps after warm-up
    # The random bits a train step draws (dropout, augmentation; common.steps.step_key):
    # "threefry" (JAX's default: the same bits on every backend and sharding) or "unsafe_rbg"
    # / "rbg" (XLA's RngBitGenerator, the usual choice on TPU; on XLA:CPU it measured slower
    # than threefry, benchmarks/profile_step.py). Either is deterministic for a given seed,
    # step and backend, and resumes exactly.
    c.rng_impl = "threefry"
    return c


def fill_missing(
    saved: ml_collections.ConfigDict, defaults: ml_collections.ConfigDict
) -> tuple[ml_collections.ConfigDict, list[str]]:
    """A saved run's config with every key it lacks taken from ``defaults`` (recursively).

    A run's config.json records the keys its code had; a key added later (a new option, off by
    default) would otherwise make the run unloadable by newer tools. Saved values always win.
    Returns (completed config, dotted names of the filled keys).
    """
    filled: list[str] = []

    def merge(ours: dict, theirs: dict, prefix: str) -> dict:
        out = dict(ours)
        for key, value in theirs.items():
            if key not in out:
                out[key] = value
                filled.append(prefix + key)
            elif isinstance(value, dict) and isinstance(out[key], dict):
                out[key] = merge(out[key], value, f"{prefix}{key}.")
        return out

    merged = merge(saved.to_dict(), defaults.to_dict(), "")
    return ml_collections.ConfigDict(merged), filled


def parse_profile(
    arg: str | None, *, choices: Sequence[str], default: str, config_file: str
) -> str:
    """Returns the profile named after the colon in ``--config=FILE:profile``.

    An unknown name is an error that lists the valid ones.
    """
    name = (arg or default).strip()
    if name not in choices:
        close = difflib.get_close_matches(name, choices, n=1)
        hint = f" (did you mean '{close[0]}'?)" if close else ""
        raise ConfigError(
            f"unknown profile '{name}' for {config_file}{hint}; choose one of: {', '.join(choices)}"
        )
    return name


def steps_from(
    *,
    epochs: float | None,
    steps: int | None,
    steps_per_epoch: int,
    what: str,
    required: bool = True,
) -> int | None:
    """Converts a duration given in epochs or in steps into steps.

    When both are set, steps win: a profile gives epochs, a command-line `*_steps` overrides.
    """
    if steps is not None:
        if epochs is not None:
            logging.info("%s: %d steps override %s epochs", what, steps, epochs)
        if steps < 0:
            raise ConfigError(f"{what}: steps must be >= 0, got {steps}")
        return int(steps)
    if epochs is not None:
        if epochs < 0:
            raise ConfigError(f"{what}: epochs must be >= 0, got {epochs}")
        return round(epochs * steps_per_epoch)
    if required:
        raise ConfigError(f"{what}: set *_epochs or *_steps")
    return None


def due(step: int, every: int | None, total: int, *, at_end: bool = True) -> bool:
    """Whether a periodic action runs after `step` (1-based count of steps done): every
    `every` steps and, with `at_end`, after the last of `total` (big_vision's `itstime`).
    `every` None or 0 means never (but still at the end, with `at_end`). Every cadence of the
    loop and the hooks (log, eval, checkpoint, epoch end, samples) asks this one predicate."""
    if every and every > 0 and step % every == 0:
        return True
    return at_end and step == total


def validate_override_keys(config: ml_collections.ConfigDict, keys: Sequence[str]) -> None:
    """Raises a ConfigError naming each unknown dotted key and the valid keys at that level."""
    for dotted in keys:
        node = config
        parts = dotted.split(".")
        for depth, part in enumerate(parts):
            if not isinstance(node, ml_collections.ConfigDict) or part not in node:
                valid = sorted(node.keys()) if isinstance(node, ml_collections.ConfigDict) else []
                prefix = ".".join(parts[:depth])
                close = difflib.get_close_matches(part, valid, n=1)
                hint = f" (did you mean '{close[0]}'?)" if close else ""
                where = f"config.{prefix}" if prefix else "config"
                raise ConfigError(
                    f"unknown config key '{dotted}'{hint}; valid keys of {where}: "
                    f"{', '.join(valid)}"
                )
            node = node[part]


# ---- setting keys from command-line text --------------------------------------------------------
def parse_literal(text: str) -> Any:
    """int, float, bool or string from command-line text; never evaluated as code."""
    t = text.strip()
    if re.fullmatch(r"[+-]?\d+", t):
        return int(t)
    try:
        return float(t)
    except ValueError:
        pass
    if t.lower() in ("true", "false"):
        return t.lower() == "true"
    if len(t) >= 2 and t[0] == t[-1] and t[0] in "'\"":
        return t[1:-1]
    return t


def parse_value(text: str) -> Any:
    """A literal, or a tuple of literals written ``(a,b,...)``."""
    t = text.strip()
    if t.startswith("(") and t.endswith(")"):
        inner = t[1:-1].strip()
        return tuple(parse_literal(v) for v in inner.split(",") if v.strip()) if inner else ()
    return parse_literal(t)


def _field(config: ml_collections.ConfigDict, dotted: str) -> tuple[ml_collections.ConfigDict, str]:
    validate_override_keys(config, [dotted])
    *parents, leaf = dotted.split(".")
    node = config
    for p in parents:
        node = node[p]
    return node, leaf


def set_value(config: ml_collections.ConfigDict, dotted: str, value: Any) -> None:
    """Sets `dotted` to `value`, converted to the field's type (int -> float, scalar -> tuple)."""
    node, leaf = _field(config, dotted)
    current = node[leaf]
    field_type = node.get_type(leaf) if hasattr(node, "get_type") else type(current)
    if field_type is float and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    elif field_type is tuple and not isinstance(value, tuple):
        value = (value,)
    elif field_type is str and not isinstance(value, str):
        value = str(value)
    try:
        node[leaf] = value
    except TypeError as e:
        raise ConfigError(
            f"cannot set config.{dotted}={value!r}: {e}; the field holds "
            f"{type(current).__name__} values like {current!r}"
        ) from e


def set_from_text(config: ml_collections.ConfigDict, dotted: str, text: str) -> None:
    """Sets `dotted` from command-line text: kept as given for a string field, else parsed
    with `parse_value` (never evaluated) and converted to the field's type."""
    node, leaf = _field(config, dotted)
    field_type = node.get_type(leaf) if hasattr(node, "get_type") else type(node[leaf])
    set_value(config, dotted, text if field_type is str else parse_value(text))


# ---- resuming a run with another command ---------------------------------------------------------
# Keys a resumed run may change: they steer the schedule, the duration, evaluation, logging and
# the machine, not the parameters' shapes or the data's order. A Task adds its own
# (`Task.resume_safe_keys`). A key ending in "." covers its whole section.
RESUME_SAFE_KEYS = (
    "learning_rate",
    "optim.",
    "max_epochs",
    "max_steps",
    "max_training_hours",
    "stop_after_steps",
    "eval_every_epochs",
    "eval_every_steps",
    "eval_batch_size",
    "final_eval_splits",
    "log_every_steps",
    "checkpoint_every_epochs",
    "checkpoint_every_steps",
    "early_stopping.",
    "grad_accum_steps",
    "prefetch",
    "compilation_cache_dir",
    "profile_steps",
    "data_dir",
    "platform",
    "num_devices",
    "distributed",
    "parallel",
    "dtype",
    "resume_from",
    "init_from",
    "on_damaged_checkpoint",
    "wandb_project",
    "wandb_entity",
)
# ... except these, which change the optimizer state's structure or dtype.
RESUME_UNSAFE_KEYS = ("optim.name", "optim.mu_dtype")


def flatten(tree: Mapping, prefix: str = "") -> dict[str, Any]:
    """{"a": {"b": 1}} -> {"a.b": 1}; lists and tuples stay values."""
    out = {}
    for key, value in tree.items():
        if isinstance(value, Mapping):
            out.update(flatten(value, f"{prefix}{key}."))
        else:
            out[prefix + key] = value
    return out


def resume_changes(
    saved: dict, wanted: dict, safe: Sequence[str] = ()
) -> tuple[list[tuple[str, Any, Any]], list[tuple[str, Any, Any]]]:
    """(accepted, refused) differences between a run's saved config and a command's config,
    each as (dotted key, run's value, command's value). Keys only one side has (an option
    added or removed since the run started) are not differences."""
    old, new = flatten(saved), flatten(wanted)
    allowed = (*RESUME_SAFE_KEYS, *safe)
    same = lambda a, b: a == b or (isinstance(a, list | tuple) and list(a) == list(b or ()))
    accepted, refused = [], []
    for key in sorted(old.keys() & new.keys()):
        if same(old[key], new[key]):
            continue
        ok = key not in RESUME_UNSAFE_KEYS and any(
            key == k or (k.endswith(".") and key.startswith(k)) for k in allowed
        )
        (accepted if ok else refused).append((key, old[key], new[key]))
    return accepted, refused
