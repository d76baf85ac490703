"""Train the formula-to-image diffusion model on the shared loop.

    python -m mathart.main --config=configs/mathart.py:tiny32_cpu --workdir=runs/mathart_cpu
    python -m mathart.main --config=configs/mathart.py:tiny32 [--config.learning_rate=1e-4 ...]

Profiles and flags: configs/mathart.py. Sampling and metrics afterwards: mathart.sample,
mathart.evaluate (see mathart/README.md).
"""

from common import cli
from mathart.task import MathArtTask

if __name__ == "__main__":
    cli.run(MathArtTask)
