"""Deterministic, resumable, per-process data sources and the device prefetcher.

Shuffling is a pure function of (seed, epoch), and a batch is a pure function of
(seed, epoch, step), so a resumed run sees exactly the batches an uninterrupted one would
(DESIGN: "derive shuffling from epoch and step, not from a live iterator"). Every process
computes the same global permutation and takes its own contiguous slice of each global batch,
so the global batch is identical for any number of processes.

Used by every family's `Task.datasets()` and by `common.train` (prefetch).
"""

import queue
import threading
import time
from collections.abc import Callable, Iterator, Mapping

import numpy as np

from common.task import Batch


def _check_split(global_batch_size: int, process_count: int) -> int:
    if global_batch_size % process_count:
        raise ValueError(
            f"global batch {global_batch_size} is not divisible by {process_count} processes; "
            "choose a batch_size that is a multiple of the number of processes"
        )
    return global_batch_size // process_count


def epoch_permutation(num_examples: int, seed: int, epoch: int) -> np.ndarray:
    """The order of examples in `epoch`: identical on every process and after any restart."""
    return np.random.default_rng([seed, epoch, 0x5EED]).permutation(num_examples)


def fixed_size_chunks(num_rows: int, batch_size: int) -> Iterator[tuple[np.ndarray, int]]:
    """Row indices of each chunk of ``range(num_rows)`` and how many of them are real.

    For offline tools that run a jitted function over a whole array: every chunk has the same
    size, so the function compiles once; the last one is filled by wrapping round to row 0
    (real rows, so nothing degenerate is computed) and callers keep ``out[:real]``. A set
    smaller than ``batch_size`` is one chunk of its own size: a second compile costs less than
    computing rows that are thrown away.
    """
    size = max(1, min(int(batch_size), int(num_rows)))
    for start in range(0, num_rows, size):
        yield np.arange(start, start + size) % num_rows, min(size, num_rows - start)


class ArraySource:
    """Train source over in-memory arrays with a leading example axis (all the same length).

    ``transform``, if given, maps a host batch (numpy) to a host batch; it receives a numpy
    Generator seeded by (seed, epoch, step, process) so host-side augmentation is resumable
    too. Device-side augmentation (in `Task.loss_fn` with the step rng) needs nothing here.
    """

    def __init__(
        self,
        arrays: Mapping[str, np.ndarray],
        *,
        seed: int,
        shuffle: bool = True,
        transform: Callable[[Batch, np.random.Generator], Batch] | None = None,
    ):
        lengths = {k: len(v) for k, v in arrays.items()}
        if len(set(lengths.values())) != 1:
            raise ValueError(f"arrays must share their first dimension, got {lengths}")
        self.arrays = dict(arrays)
        self.num_examples = next(iter(lengths.values()))
        self.seed = seed
        self.shuffle = shuffle
        self.transform = transform

    def steps_per_epoch(self, global_batch_size: int) -> int:
        return self.num_examples // global_batch_size

    def batches(
        self,
        *,
        epoch: int,
        start_step: int,
        global_batch_size: int,
        process_index: int,
        process_count: int,
    ) -> Iterator[Batch]:
        local = _check_split(global_batch_size, process_count)
        if self.num_examples < global_batch_size:
            raise ValueError(
                f"the training set has {self.num_examples} examples, fewer than one global "
                f"batch of {global_batch_size}; lower batch_size"
            )
        order = (
            epoch_permutation(self.num_examples, self.seed, epoch)
            if self.shuffle
            else np.arange(self.num_examples)
        )
        for step in range(start_step, self.steps_per_epoch(global_batch_size)):
            rows = order[step * global_batch_size : (step + 1) * global_batch_size]
            rows = np.sort(rows[process_index * local : (process_index + 1) * local])
            batch = {k: v[rows] for k, v in self.arrays.items()}
            if self.transform is not None:
                rng = np.random.default_rng([self.seed, epoch, step, process_index, 0xA06])
                batch = self.transform(batch, rng)
            yield batch


class ArrayEvalSource:
    """Eval source over in-memory arrays: fixed order, last batch zero-padded with ``mask``."""

    def __init__(self, arrays: Mapping[str, np.ndarray]):
        lengths = {k: len(v) for k, v in arrays.items()}
        if len(set(lengths.values())) != 1:
            raise ValueError(f"arrays must share their first dimension, got {lengths}")
        self.arrays = dict(arrays)
        self.num_examples = next(iter(lengths.values()))

    def batches(
        self, *, global_batch_size: int, process_index: int, process_count: int
    ) -> Iterator[Batch]:
        local = _check_split(global_batch_size, process_count)
        for start in range(0, self.num_examples, global_batch_size):
            idx = np.arange(start, start + global_batch_size)
            idx = idx[process_index * local : (process_index + 1) * local]
            mask = idx < self.num_examples
            safe = np.where(mask, idx, 0)
            batch = {}
            for k, v in self.arrays.items():
                rows = v[safe]
                # Zero the padding so it cannot leak into anything that forgets the mask.
                rows[~mask] = 0
                batch[k] = rows
            batch["mask"] = mask
            yield batch


class Prefetcher:
    """Runs a host iterator in a thread, places batches on device, and times the waits.

    `wait_seconds` accumulates how long the training loop blocked on input: the figure that
    tells whether the input pipeline is the bottleneck (logged as ``perf/data_wait_fraction``).
    """

    _DONE = object()

    def __init__(self, iterator: Iterator[Batch], place: Callable[[Batch], Batch], depth: int):
        self._queue: queue.Queue = queue.Queue(maxsize=max(1, depth))
        self._error: BaseException | None = None
        self._stop = threading.Event()
        self.wait_seconds = 0.0
        self._thread = threading.Thread(
            target=self._run, args=(iterator, place), daemon=True, name="prefetch"
        )
        self._thread.start()

    def _run(self, iterator: Iterator[Batch], place: Callable[[Batch], Batch]) -> None:
        try:
            for batch in iterator:
                if self._stop.is_set():
                    return
                item = place(batch)
                while not self._stop.is_set():
                    try:
                        self._queue.put(item, timeout=0.1)
                        break
                    except queue.Full:
                        continue
        except BaseException as e:  # surfaced in the consumer thread
            self._error = e
        finally:
            while not self._stop.is_set():
                try:
                    self._queue.put(self._DONE, timeout=0.1)
                    break
                except queue.Full:
                    continue

    def __iter__(self) -> "Prefetcher":
        return self

    def __next__(self) -> Batch:
        t0 = time.perf_counter()
        item = self._queue.get()
        self.wait_seconds += time.perf_counter() - t0
        if item is self._DONE:
            if self._error is not None:
                raise self._error
            raise StopIteration
        return item

    def close(self) -> None:
        self._stop.set()
        while True:  # unblock a producer stuck on a full queue
            try:
                self._queue.get_nowait()
            except queue.Empty:
                break
        self._thread.join(timeout=5)
