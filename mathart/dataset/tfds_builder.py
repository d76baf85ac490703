"""TFDS builder for the synthetic formula dataset: ``tfds.load("math_art/32")`` and friends.

    import mathart.dataset.tfds_builder  # registers "math_art" with TFDS
    ds = tfds.load("math_art/32", split="train", data_dir="~/tensorflow_datasets")

Everything is generated locally by `mathart.dataset.build_arrays` (no download, works
offline); the first ``tfds.load`` prepares the data, later ones read the TFRecords. Configs:

=======  ==========  =======  ==========  ====  ==========================================
name     resolution  train    validation  test  note
=======  ==========  =======  ==========  ====  ==========================================
32       32          20 000   1 000       1 000 the ADR's 32x32 setting (``tiny32`` profile)
64       64          20 000   1 000       1 000
128      128         10 000   500         500
512      512         2 000    200         200   the seed's resolution; slow to build on CPU
tiny     32          8        4           4     for tests
=======  ==========  =======  ==========  ====  ==========================================

Other sizes: ``tfds.builder("math_art", config=MathArtConfig(name="r48", resolution=48,
num_train=5000), data_dir=...)``. Features: ``image`` (uint8 HxWx3, PNG), ``formula``
(canonical text), ``family`` and ``complexity`` (class labels), ``style_seed`` (int32).
The train/validation/test splits hold disjoint formulas (see `mathart.dataset.build`).
"""

import dataclasses
from typing import ClassVar

import numpy as np
import tensorflow_datasets as tfds
from etils import epath

from mathart.dataset.build import DATASET_VERSION, build_arrays
from mathart.dataset.families import COMPLEXITY_NAMES, FAMILIES


@dataclasses.dataclass
class MathArtConfig(tfds.core.BuilderConfig):
    resolution: int = 32
    num_train: int = 20_000
    num_validation: int = 1_000
    num_test: int = 1_000
    seed: int = 0


class MathArt(tfds.core.GeneratorBasedBuilder):
    """Procedurally sampled formulas rendered with `mathart.render` (formula, image) pairs."""

    # TFDS 4.9.10 derives `code_path` through `importlib_resources`, a package the pinned
    # environment lacks (ModuleNotFoundError on first use); the file path is all it needs.
    code_path = epath.Path(__file__)

    VERSION = tfds.core.Version(f"{DATASET_VERSION}.0.0")
    RELEASE_NOTES: ClassVar[dict[str, str]] = {
        "1.0.0": "First release.",
        f"{DATASET_VERSION}.0.0": "Implicit equations drawn as strokes; larger families; "
        "exact-pHash de-duplication.",
    }
    BUILDER_CONFIGS: ClassVar[list[MathArtConfig]] = [
        MathArtConfig(name="32", resolution=32, description="32x32 renders"),
        MathArtConfig(name="64", resolution=64, description="64x64 renders"),
        MathArtConfig(
            name="128",
            resolution=128,
            num_train=10_000,
            num_validation=500,
            num_test=500,
            description="128x128 renders",
        ),
        MathArtConfig(
            name="512",
            resolution=512,
            num_train=2_000,
            num_validation=200,
            num_test=200,
            description="512x512 renders (the seed's resolution)",
        ),
        MathArtConfig(
            name="tiny",
            resolution=32,
            num_train=8,
            num_validation=4,
            num_test=4,
            description="a few 32x32 examples for tests",
        ),
    ]

    def _info(self) -> tfds.core.DatasetInfo:
        r = self.builder_config.resolution
        return self.dataset_info_from_configs(
            features=tfds.features.FeaturesDict(
                {
                    "image": tfds.features.Image(shape=(r, r, 3)),
                    "formula": tfds.features.Text(),
                    "family": tfds.features.ClassLabel(names=FAMILIES),
                    "complexity": tfds.features.ClassLabel(names=list(COMPLEXITY_NAMES)),
                    "style_seed": tfds.features.Scalar(dtype=np.int32),
                }
            ),
            supervised_keys=None,
            homepage="https://github.com/ (jaxfam monorepo, mathart/dataset/DATA.md)",
        )

    def _split_generators(self, dl_manager):
        del dl_manager  # nothing to download: the data is generated
        c = self.builder_config
        return {
            "train": self._generate_examples("train", c.num_train),
            "validation": self._generate_examples("validation", c.num_validation),
            "test": self._generate_examples("test", c.num_test),
        }

    def _generate_examples(self, split: str, num_examples: int):
        c = self.builder_config
        arrays = build_arrays(c.resolution, split, num_examples, seed=c.seed)
        for i in range(len(arrays["formula"])):
            yield (
                i,
                {
                    "image": arrays["image"][i],
                    "formula": str(arrays["formula"][i]),
                    "family": int(arrays["family"][i]),
                    "complexity": int(arrays["complexity"][i]),
                    "style_seed": np.int32(arrays["style_seed"][i]),
                },
            )
