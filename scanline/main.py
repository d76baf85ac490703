"""Train a scan-line tip-state classifier.

    python -m scanline.main --config=configs/scanline.py[:profile] [--workdir=DIR]
                            [--config.model.name=lrcn --config.data.path=scans.npz ...]

Profiles and fields: configs/scanline.py. Without --workdir the run goes to
checkpoints/YYYYMMDD_HHMMSS, plus _j$SLURM_JOB_ID inside a SLURM job (the seed's naming).
"""

import datetime
import os

import ml_collections

from common import cli
from scanline.task import ScanlineTask


def timestamped_workdir(config: ml_collections.ConfigDict) -> str:
    """checkpoints/YYYYMMDD_HHMMSS[_j<SLURM_JOB_ID>] (local time, as the seed's runs)."""
    del config
    name = datetime.datetime.now().strftime("%Y%m%d_%H%M%S")
    job = os.environ.get("SLURM_JOB_ID")
    if job:
        name += f"_j{job}"
    return os.path.join("checkpoints", name)


if __name__ == "__main__":
    cli.run(ScanlineTask, workdir_fn=timestamped_workdir)
