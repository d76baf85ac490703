"""Data for `mathart`: the procedural formula dataset, a TFDS builder and users' JSONL data.

Public API (stable): `FAMILIES`, `COMPLEXITY_NAMES`, `build_arrays`, `build_dataset`,
`split_of`, `load_jsonl`, `captions_to_jsonl`, `JsonlError`. The TFDS builder lives in
`mathart.dataset.tfds_builder` (imported on demand: it pulls in TensorFlow). See DATA.md.
"""

from mathart.dataset.build import SPLITS, BuildStats, build_arrays, build_dataset, split_of
from mathart.dataset.families import (
    COMPLEXITY_MIX,
    COMPLEXITY_NAMES,
    FAMILIES,
    FAMILY_COMPLEXITY,
    sample,
    sample_family,
)
from mathart.dataset.jsonl import JsonlError, captions_to_jsonl, load_jsonl

__all__ = [
    "COMPLEXITY_MIX",
    "COMPLEXITY_NAMES",
    "FAMILIES",
    "FAMILY_COMPLEXITY",
    "SPLITS",
    "BuildStats",
    "JsonlError",
    "build_arrays",
    "build_dataset",
    "captions_to_jsonl",
    "load_jsonl",
    "sample",
    "sample_family",
    "split_of",
]
