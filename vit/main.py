"""Train a ViT on CIFAR-10.

    python -m vit.main --config=configs/vit.py[:default|small|large|custom_seed|strong|smoke] \
        --workdir=runs/vit_small [--config.data_dir=DIR --config.max_training_hours=0.5 ...]

Rerunning the same command resumes from WORKDIR's latest checkpoint. Profiles and every
option: configs/vit.py. Offline data: python -m vit.prepare_cifar10 --help.
"""

from common import cli
from vit.task import VitTask

if __name__ == "__main__":
    cli.run(VitTask)
