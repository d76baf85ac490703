"""Config of the test-only tiny task (tests/common/tiny_task.py): seconds on CPU.

python -m common.bench --config=tests/common/tiny_config.py
"""

import ml_collections

from common.config import base_config, parse_profile

PROFILES = ("default", "smoke")


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    profile = parse_profile(
        arg,
        choices=PROFILES,
        default="default",
        config_file="tests/common/tiny_config.py",
    )
    c = base_config()
    c.task = "tests.common.tiny_task:TinyTask"
    c.profile = profile
    c.compilation_cache_dir = ""
    c.batch_size = 32
    c.max_epochs = 4.0
    c.learning_rate = 0.05
    c.optim.schedule = "warmup_cosine"
    c.optim.warmup_steps = 4
    c.optim.weight_decay = 1e-4
    c.optim.grad_clip = 1.0
    c.log_every_steps = 4
    c.tiny = ml_collections.ConfigDict()
    c.tiny.num_train = 256
    c.tiny.num_val = 100  # not a multiple of the eval batch: exercises padding + mask
    c.tiny.dim = 8
    c.tiny.hidden = 16
    c.tiny.classes = 3
    c.tiny.dropout = 0.0
    c.tiny.nan_at_step = -1
    c.tiny.device_matmuls_per_step = 0  # > 0: 512x512 matmuls each step does on device
    c.tiny.freeze_encoder_after_epoch = -1
    return c
