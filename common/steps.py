"""The compiled pieces of training, built once from a Task and a config: the train state, its
initialiser, the train step (jit or pmap) and the eval step.

`common.train` runs them; `common.bench` times exactly the same compiled step, so benchmark
numbers describe the real training step, not a look-alike.
"""

from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import Any

import flax
import jax
import jax.numpy as jnp
import ml_collections
import optax
from jax.sharding import Mesh, NamedSharding

from common import metrics as metrics_lib
from common import optim, parallel
from common.config import ConfigError
from common.task import Batch, StepContext, Task


@flax.struct.dataclass
class TrainState:
    """Everything a bit-exact resume needs (the data position is a function of `step`)."""

    step: jax.Array  # int32 scalar: number of updates applied
    params: Any
    extras: Any  # non-param collections, e.g. batch_stats
    opt_state: Any  # includes the schedule's count
    ema_params: Any  # {} when config.ema_decay == 0
    controls: Any  # dict[str, float32 scalar] (loss weights, lr_scale/<group>, ...)
    rng: jax.Array  # base key; step keys are fold_in(rng, step)


@dataclass
class Steps:
    """What `build_steps` returns."""

    init_state: Callable[[], TrainState]  # fresh state, created already replicated
    with_params: Callable[[TrainState, Any], TrainState]  # swap params (init_from), reset opt
    abstract_state: TrainState  # ShapeDtypeStructs with shardings: the restore target
    train_step: Callable  # (state, batch, metrics) -> (state, metrics); donates both
    eval_step: Callable  # (params, extras, controls, step, batch) -> clu Collection
    eval_params: Callable[[TrainState], Any]  # EMA params when EMA is on, else params
    new_metrics: Callable[[], dict]  # empty on-device train-metric accumulator
    schedule: optax.Schedule
    replicated: NamedSharding
    stacked: bool  # pmap wants batches as [devices, per_device, ...]


RNG_IMPLS = ("threefry", "rbg", "unsafe_rbg")


def step_key(key: jax.Array, impl: str) -> jax.Array:
    """A train step's key in the PRNG implementation `impl` (config.rng_impl), derived from
    the run's threefry key so that checkpoints and the step -> key rule stay the same.

    Threefry is tens of integer instructions per random word, all of it visible to XLA;
    rbg / unsafe_rbg hand the bits to XLA's RngBitGenerator, which TPUs implement in
    hardware (unsafe_rbg also splits and folds keys with it: weaker stream independence
    guarantees, which dropout does not need). On XLA:CPU the generator is expanded into calls
    that measured slower than threefry; there `common.dropout`'s cheaper draws are the lever."""
    if impl not in RNG_IMPLS:
        raise ConfigError(f"config.rng_impl must be one of {', '.join(RNG_IMPLS)}, got '{impl}'")
    if impl == "threefry":
        return key
    return jax.random.wrap_key_data(jax.random.bits(key, (4,), jnp.uint32), impl=impl)


def build_steps(
    task: Task,
    config: ml_collections.ConfigDict,
    mesh: Mesh,
    example: Batch,
    *,
    steps_per_epoch: int,
    total_steps: int,
) -> Steps:
    """Builds state and steps for `task`; `example` is a small host batch (shapes only)."""
    init_rng, train_rng = jax.random.split(jax.random.PRNGKey(config.seed))
    abstract_vars = jax.eval_shape(task.init_variables, init_rng, example)
    if "params" not in abstract_vars:
        raise TypeError(f"{type(task).__name__}.init_variables must return a dict with 'params'")
    patterns = task.param_groups()
    groups = optim.group_assignment(abstract_vars["params"], patterns)
    controls0 = {**task.initial_controls(), **optim.initial_lr_scales(config, patterns)}
    schedule = optim.make_schedule(config, steps_per_epoch=steps_per_epoch, total_steps=total_steps)
    tx = optim.make_optimizer(config, schedule, abstract_vars["params"])
    ema_decay = float(config.ema_decay)
    repl = parallel.replicated(mesh)

    def fresh_state(rng) -> TrainState:
        variables = dict(task.init_variables(rng, example))
        params = variables.pop("params")
        return TrainState(
            step=jnp.zeros((), jnp.int32),
            params=params,
            extras=variables,
            opt_state=tx.init(params),
            ema_params=params if ema_decay > 0 else {},
            controls={k: jnp.asarray(v, jnp.float32) for k, v in controls0.items()},
            rng=train_rng,
        )

    shapes = jax.eval_shape(fresh_state, init_rng)
    shardings = jax.tree.map(lambda _: repl, shapes)
    abstract_state = jax.tree.map(
        lambda a, s: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=s), shapes, shardings
    )

    def with_params(state: TrainState, params) -> TrainState:
        params = jax.device_put(params, shardings.params)
        opt_state = jax.jit(tx.init, out_shardings=shardings.opt_state)(params)
        # The EMA starts equal to the params but in buffers of its own: the train step donates
        # the whole state, and one buffer donated twice is an error (a crash on some backends).
        ema = jax.tree.map(jnp.copy, params) if ema_decay > 0 else {}
        return state.replace(params=params, opt_state=opt_state, ema_params=ema)

    accum = int(config.get("grad_accum_steps", 1) or 1)
    rng_impl = str(config.get("rng_impl", "threefry"))
    step_key(jax.random.PRNGKey(0), rng_impl)  # an unknown name fails here, not in a trace

    def loss_and_grads(params, batch, rng, ctx):
        """(loss, (metrics, new_extras)), grads of one batch, or averaged over micro-batches."""

        def loss_of(p, b, r, c):
            loss, (mets, new_extras) = task.loss_fn(p, b, r, c)
            return jnp.asarray(loss, jnp.float32), (dict(mets), new_extras)

        grad_fn = jax.value_and_grad(loss_of, has_aux=True)
        if accum == 1:
            return grad_fn(params, batch, rng, ctx)
        # Micro-batch i takes rows i, i + accum, ...: each one stays evenly spread over the
        # devices (a plain split would put a micro-batch on a few devices only).
        micro = jax.tree.map(
            lambda x: jnp.swapaxes(x.reshape((x.shape[0] // accum, accum, *x.shape[1:])), 0, 1),
            batch,
        )

        def body(carry, xs):
            totals, extras = carry
            mb, i = xs
            c = ctx.replace(extras=extras)
            out, grads = grad_fn(params, mb, jax.random.fold_in(rng, i), c)
            (loss, (mets, new_extras)) = out
            add = lambda a, b: jax.tree.map(lambda u, v: u + v / accum, a, b)
            totals = add(totals, (grads, loss, mets))
            return (totals, extras if new_extras is None else new_extras), None

        first = jax.tree.map(lambda x: x[0], micro)
        shapes = jax.eval_shape(grad_fn, params, first, rng, ctx)
        (_, (mets_shape, _)), grads_shape = shapes
        zeros = jax.tree.map(
            lambda a: jnp.zeros(a.shape, a.dtype), (grads_shape, shapes[0][0], mets_shape)
        )
        (totals, extras), _ = jax.lax.scan(
            body, (zeros, ctx.extras), (micro, jnp.arange(accum, dtype=jnp.int32))
        )
        grads, loss, mets = totals
        return (loss, (mets, extras)), grads

    def update(state: TrainState, batch, acc, reduce, shard_index):
        """One optimizer step; `reduce` averages over replicas (identity under jit)."""
        rng = jax.random.fold_in(jax.random.fold_in(state.rng, state.step), shard_index)
        rng = step_key(rng, rng_impl)
        ctx = StepContext(
            step=state.step,
            extras=state.extras,
            controls=state.controls,
            epoch=state.step.astype(jnp.float32) / steps_per_epoch,
            total_epochs=jnp.float32(total_steps / steps_per_epoch),
        )
        (loss, (mets, new_extras)), grads = loss_and_grads(state.params, batch, rng, ctx)
        grads, loss, mets, new_extras = reduce((grads, loss, dict(mets), new_extras))
        grad_norm = optax.tree.norm(grads)  # optax.global_norm is deprecated
        finite = jnp.isfinite(loss) & jnp.isfinite(grad_norm)
        updates, opt_state = tx.update(grads, state.opt_state, state.params)
        updates = optim.scale_updates_by_group(updates, groups, state.controls)
        params = optax.apply_updates(state.params, updates)
        # A non-finite step changes nothing; the host raises at its next check.
        keep = lambda new, old: jax.tree.map(lambda n, o: jnp.where(finite, n, o), new, old)
        params, opt_state = keep(params, state.params), keep(opt_state, state.opt_state)
        extras = state.extras if new_extras is None else keep(new_extras, state.extras)
        ema = state.ema_params
        if ema_decay > 0:
            # Warm-up (TF ExponentialMovingAverage's num_updates rule) so early EMA tracks.
            t = state.step.astype(jnp.float32)
            d = jnp.minimum(ema_decay, (1.0 + t) / (10.0 + t))
            ema = jax.tree.map(lambda e, p: d * e + (1.0 - d) * p, ema, params)
        mets = {**mets, "loss": loss, "grad_norm": grad_norm}
        acc = metrics_lib.merge_train_metrics(acc, mets, state.step, finite)
        state = state.replace(
            step=state.step + 1, params=params, extras=extras, opt_state=opt_state, ema_params=ema
        )
        return state, acc

    if config.parallel == "jit":
        train_step = jax.jit(
            lambda s, b, a: update(s, b, a, lambda tree: tree, 0),
            in_shardings=(shardings, parallel.data_sharded(mesh), repl),
            out_shardings=(shardings, repl),
            donate_argnums=(0, 2),
        )
    elif config.parallel == "pmap":
        axis = parallel.PMAP_AXIS
        train_step = jax.pmap(
            lambda s, b, a: update(
                s, b, a, lambda tree: jax.lax.pmean(tree, axis), jax.lax.axis_index(axis)
            ),
            axis_name=axis,
            devices=list(mesh.devices.flat),
            in_axes=(None, 0, None),  # state and metrics unreplicated in and out
            out_axes=(None, None),
        )
    else:
        raise ConfigError(f"config.parallel must be 'jit' or 'pmap', got '{config.parallel}'")

    # The metric keys the loss reports decide the accumulator's structure.
    ctx0 = StepContext(
        step=shapes.step,
        extras=shapes.extras,
        controls=shapes.controls,
        epoch=jax.ShapeDtypeStruct((), jnp.float32),
        total_epochs=jax.ShapeDtypeStruct((), jnp.float32),
    )
    loss_shapes = jax.eval_shape(
        lambda p, ctx: task.loss_fn(p, dict(example), init_rng, ctx), shapes.params, ctx0
    )
    metric_keys = {*loss_shapes[1][0].keys(), "loss", "grad_norm"}

    return Steps(
        init_state=lambda: jax.jit(fresh_state, out_shardings=shardings)(init_rng),
        with_params=with_params,
        abstract_state=abstract_state,
        train_step=train_step,
        eval_step=build_eval_step(task, mesh),
        eval_params=lambda s: s.ema_params if ema_decay > 0 else s.params,
        new_metrics=lambda: jax.device_put(metrics_lib.empty_train_metrics(metric_keys), repl),
        schedule=schedule,
        replicated=repl,
        stacked=config.parallel == "pmap",
    )


def build_eval_step(task: Task, mesh: Mesh) -> Callable:
    """The jitted eval step, `(params, extras, controls, step, batch) -> clu Collection`: the
    loop's and `common.evaluate`'s, so offline figures are computed by the same function."""
    repl = parallel.replicated(mesh)

    # Outputs replicated: per-example outputs (e.g. for AUROC) become readable on every host.
    @partial(jax.jit, out_shardings=repl)
    def eval_step(params, extras, controls, step, batch):
        ctx = StepContext(step=step, extras=extras, controls=controls)
        return task.eval_step(params, batch, ctx)

    return eval_step
