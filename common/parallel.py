"""Devices, mesh, batch placement, and the jit / pmap step builders, plus multi-host init.

Default path: `jax.jit` over global arrays on a 1-D ("data",) mesh — params replicated, batch
sharded, XLA inserts the gradient all-reduce (the form JAX recommends since pmap went into
maintenance mode). `config.parallel = "pmap"` runs the same update function under `jax.pmap`
with `lax.pmean` on gradients and metrics; its state goes in and out unreplicated
(`in_axes=None`, `out_axes=None`), so both paths share one state layout and checkpoint format.
"""

import logging
import os

import jax
import ml_collections
import numpy as np
from jax.sharding import AxisType, Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

DATA_AXIS = "data"
PMAP_AXIS = "batch"


# ---- process setup -------------------------------------------------------------------------
def _cluster_detected() -> str | None:
    env = os.environ
    if int(env.get("SLURM_NTASKS", "1") or 1) > 1 and "SLURM_JOB_ID" in env:
        return "SLURM"
    if "OMPI_MCA_orte_hnp_uri" in env or "OMPI_COMM_WORLD_SIZE" in env:
        return "Open MPI"
    if env.get("TPU_WORKER_HOSTNAMES", "").count(",") >= 1:
        return "TPU pod"
    if "JAX_COORDINATOR_ADDRESS" in env and int(env.get("JAX_NUM_PROCESSES", "1")) > 1:
        return "JAX_COORDINATOR_ADDRESS"
    return None


def maybe_initialize_distributed(config: ml_collections.ConfigDict) -> bool:
    """Calls `jax.distributed.initialize()` only when asked or when a cluster is detected.

    With no detectable cluster and no coordinator address it raises, so single-host runs skip it.
    Must run before anything touches devices.
    """
    mode = str(config.get("distributed", "auto"))
    if mode not in ("auto", "on", "off"):
        raise ValueError(f"config.distributed must be auto, on or off; got '{mode}'")
    cluster = _cluster_detected()
    if mode == "off" or (mode == "auto" and cluster is None):
        return False
    logging.info("initialising jax.distributed (%s)", cluster or "config.distributed=on")
    env = os.environ
    if "JAX_COORDINATOR_ADDRESS" in env and "JAX_NUM_PROCESSES" in env:
        # Explicit cluster (e.g. several processes on one machine, or a hand-made launcher).
        jax.distributed.initialize(
            coordinator_address=env["JAX_COORDINATOR_ADDRESS"],
            num_processes=int(env["JAX_NUM_PROCESSES"]),
            process_id=int(env["JAX_PROCESS_ID"]),
        )
    else:
        jax.distributed.initialize()  # SLURM / Open MPI / TPU auto-detection
    return True


def hide_gpus_from_tensorflow() -> None:
    """tf.data must never allocate GPU memory next to JAX (flax#445): called by the one reader
    that starts tf.data (vit's TFRecord path), before it does; a no-op without TensorFlow."""
    try:
        import tensorflow as tf

        tf.config.set_visible_devices([], "GPU")
    except (ImportError, RuntimeError):  # no TF, or TF already initialised without GPUs
        pass


def check_platform(config: ml_collections.ConfigDict) -> str:
    """A requested GPU/TPU that is missing is an error, never a silent CPU run."""
    want = str(config.get("platform", "auto"))
    have = jax.default_backend()
    if want not in ("auto", "cpu", "gpu", "tpu"):
        raise ValueError(f"config.platform must be auto, cpu, gpu or tpu; got '{want}'")
    if want != "auto" and want != have:
        raise RuntimeError(
            f"config.platform='{want}' but JAX's backend is '{have}' (devices: {jax.devices()}). "
            "Install the matching jax extra (`pip install -e .[cuda]` or `.[tpu]`), or set "
            "--config.platform=auto to accept the available backend."
        )
    return have


# ---- mesh and placement --------------------------------------------------------------------
def make_mesh(num_devices: int | None = None) -> Mesh:
    """1-D data-parallel mesh (Auto axis, classic GSPMD) over all devices of all processes,
    or over the first `num_devices` (single process only), e.g. one GPU of several."""
    devices = jax.devices()
    if num_devices is not None:
        if jax.process_count() > 1:
            raise ValueError("config.num_devices is for single-process runs; leave it None")
        if not 1 <= num_devices <= len(devices):
            raise ValueError(f"config.num_devices={num_devices}; this host has {len(devices)}")
        devices = devices[:num_devices]
    return jax.make_mesh(
        (len(devices),), (DATA_AXIS,), axis_types=(AxisType.Auto,), devices=devices
    )


def replicated(mesh: Mesh) -> NamedSharding:
    return NamedSharding(mesh, P())


def data_sharded(mesh: Mesh) -> NamedSharding:
    return NamedSharding(mesh, P(DATA_AXIS))


def per_device_batch(global_batch: int, mesh: Mesh, what: str = "batch_size") -> int:
    n = mesh.size
    if global_batch % n:
        raise ValueError(
            f"{what}={global_batch} is not divisible by the {n} devices; use a multiple of {n}"
        )
    return global_batch // n


def place_batch(local_batch: dict, mesh: Mesh, *, stacked: bool = False) -> dict:
    """Turns this process's rows into one global array per key, sharded over the data axis.

    `stacked=True` reshapes to [devices, per_device, ...] (the leading axis pmap maps over).
    """
    sharding = data_sharded(mesh)
    n_local = sum(d.process_index == jax.process_index() for d in mesh.devices.flat)

    def put(x):
        x = np.asarray(x)
        if stacked:
            x = x.reshape((n_local, x.shape[0] // n_local, *x.shape[1:]))
        return jax.make_array_from_process_local_data(sharding, x)

    return {k: put(v) for k, v in local_batch.items()}


def tree_size(tree) -> int:
    """Number of elements in a pytree of arrays or shape structs (e.g. parameter count)."""
    return sum(int(np.prod(x.shape)) for x in jax.tree.leaves(tree))
