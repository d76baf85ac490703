"""Whole datasets: parameters once, then chunks of CHUNK images rendered (in parallel when
asked) with per-chunk noise streams, so a seed gives the same images whatever the number of
workers; written atomically as NPZ."""

import concurrent.futures
import multiprocessing
import os
from collections.abc import Sequence

import numpy as np

from scanline.synth.parameters import (
    CHUNK,
    CLASS_NAMES,
    DEFAULT_SHARES,
    SUBTYPE_CLASS,
    SUBTYPE_NAMES,
    sample_parameters,
)
from scanline.synth.surface import render_chunk, select_images


def chunk_slices(n: int) -> list[np.ndarray]:
    """Image indices of each rendering chunk of an n-image dataset, in order."""
    return [np.arange(s, min(s + CHUNK, n)) for s in range(0, n, CHUNK)]


def render_dataset_chunk(
    params: dict, defects: dict, size: int, seed: int, chunk_index: int, noise_stream: int = 0
) -> np.ndarray:
    """Renders chunk `chunk_index` of a dataset with its own noise, as `generate` does.

    Changing a parameter that draws no random numbers (e.g. switching a double tip's ghost off)
    and rendering again gives the same image with identical noise: a counterfactual twin
    (`scanline.twins`). `noise_stream` > 0 draws other noise for the same images.
    """
    stream = (seed, 0xC0DE, chunk_index) + ((noise_stream,) if noise_stream else ())
    return render_chunk(params, defects, size, stream)


def _render_job(args):
    return render_dataset_chunk(*args)


def generate(
    n: int,
    seed: int,
    *,
    shares: Sequence[float] = DEFAULT_SHARES,
    copies: int = 1,
    size: int = 128,
    workers: int = 1,
    instrument_scale: dict[str, float] | None = None,
) -> dict[str, np.ndarray]:
    """Generates `n` images; identical output for the same arguments whatever `workers` is.

    `instrument_scale` multiplies instrument parameters (`parameters._sample_instrument`
    keys, e.g. {"white_sigma": 3.0}) of every image: another microscope (`synth.sessions`).
    """
    if size < 16:
        raise ValueError(f"--size must be >= 16 pixels, got {size}")
    p = sample_parameters(n, seed, shares, copies)
    for key, factor in (instrument_scale or {}).items():
        p[key] = p[key] * factor
    defects = p.pop("defects")
    jobs = [
        (select_images(p, idx), defects, size, seed, c) for c, idx in enumerate(chunk_slices(n))
    ]
    if workers > 1 and len(jobs) > 1:
        # "spawn": forking a process that has JAX threads running can deadlock.
        ctx = multiprocessing.get_context("spawn")
        with concurrent.futures.ProcessPoolExecutor(workers, mp_context=ctx) as pool:
            parts = list(pool.map(_render_job, jobs, chunksize=4))
    else:
        parts = [_render_job(j) for j in jobs]
    return {
        "images": np.concatenate(parts),
        "labels": SUBTYPE_CLASS[p["subtype"]].astype(np.int32),
        "groups": p["source"].astype(np.int32),
        "class_names": np.array(CLASS_NAMES),
        "subtype": p["subtype"].astype(np.int8),
        "subtype_names": np.array(SUBTYPE_NAMES),
        "scan_size_nm": p["scan_nm"].astype(np.float32),
        "theta_deg": np.rad2deg(p["theta"]).astype(np.float32),
    }


def write_npz(path: str, data: dict[str, np.ndarray]) -> None:
    """Writes atomically (temp file + rename) so a crash never leaves a truncated cache file."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    tmp = f"{path}.tmp{os.getpid()}.npz"
    np.savez(tmp, **data)
    os.replace(tmp, path)
