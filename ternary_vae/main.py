"""Train the hyperbolic ternary VAE: stage 0 (VAE) then stage 1 (hyperbolic), one command.

python -m ternary_vae.main --config=configs/ternary_vae.py:mathematical_foundation --workdir=W
"""

from common import cli
from ternary_vae.task import TernaryVaeTask
from ternary_vae.two_stage import train_two_stages

if __name__ == "__main__":
    cli.run(TernaryVaeTask, train_fn=train_two_stages)
