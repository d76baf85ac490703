"""Every scanline profile builds its model on 128x128 scans (shapes only, nothing compiled),
and the CPU profiles have the parameter counts the README's tables quote."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from common import parallel
from configs import scanline as scanline_configs
from scanline import model as model_lib

README_PARAMS = {
    "vit_cpu": 150_852,
    "sequential_cpu": 146_052,
    "lrcn_cpu": 166_332,
    "lrcn_full_cpu": 2_236_148,
}


@pytest.mark.parametrize("profile", scanline_configs.PROFILES)
def test_profile_builds_and_reads_out_after_the_last_line(profile):
    cfg = scanline_configs.get_config(profile).model
    model = model_lib.build_model(cfg, 4, jnp.float32)
    lines = jax.ShapeDtypeStruct((2, 128, 128), jnp.float32)
    variables = jax.eval_shape(lambda x: model.init(jax.random.key(0), x, train=False), lines)
    logits = jax.eval_shape(lambda v, x: model.apply(v, x, train=False), variables, lines)
    seen = model_lib.lines_seen(cfg, 128)
    assert logits.shape == (2, len(seen), 4)
    assert seen[-1] == 128
    count = parallel.tree_size(variables["params"])
    if profile in README_PARAMS:
        assert count == README_PARAMS[profile]


def test_whole_scan_window_fits_any_number_of_lines():
    cfg = scanline_configs.get_config("lrcn_full_cpu").model
    for lines in (128, 96):
        np.testing.assert_array_equal(model_lib.window_starts(cfg, lines), [0])
        np.testing.assert_array_equal(model_lib.lines_seen(cfg, lines), [lines])
    # On 128-line scans, window 0 (whole scan) is exactly window 128.
    model0 = model_lib.build_model(cfg, 4, jnp.float32)
    cfg128 = cfg.copy_and_resolve_references()
    cfg128.lrcn_window = 128
    model128 = model_lib.build_model(cfg128, 4, jnp.float32)
    x = jax.random.normal(jax.random.key(1), (2, 128, 128))
    variables = model0.init(jax.random.key(0), x, train=False)
    np.testing.assert_array_equal(
        model0.apply(variables, x, train=False), model128.apply(variables, x, train=False)
    )
    cfg128.lrcn_window = -1
    with pytest.raises(ValueError, match="lrcn_window must be >= 0"):
        model_lib.window_starts(cfg128, 128)


def test_settings_an_architecture_ignores_are_named_and_refused_on_the_command_line():
    from common import cli
    from common.config import ConfigError
    from scanline.task import ScanlineTask

    cfg = scanline_configs.get_config("smoke")
    cfg.model.name = "vit"
    ignored = ScanlineTask.ignored_settings(cfg)
    assert "lstm_size" not in ignored and ignored["model.lstm_size"] == (
        "only the lrcn model reads it and config.model.name is 'vit'"
    )
    assert "model.embedding_dim" not in ignored and "model.window" in ignored
    assert ignored["model.tokenizer_stride"].startswith("only the cnn tokenizer reads it")
    cfg.model.name = "lrcn"
    assert "model.lstm_size" not in ScanlineTask.ignored_settings(cfg)
    assert "model.num_heads" in ScanlineTask.ignored_settings(cfg)
    with pytest.raises(ConfigError, match=r"--config\.model\.num_heads has no effect: only the"):
        cli.check_command(ScanlineTask, cfg, ["max_steps", "model.num_heads"])
    cli.check_command(ScanlineTask, cfg, ["max_steps", "model.lstm_size"])
    # Every profile's own settings are ones its model reads, or left at their defaults.
    default = scanline_configs.get_config().model
    for profile in scanline_configs.PROFILES:
        c = scanline_configs.get_config(profile)
        for key in ScanlineTask.ignored_settings(c):
            leaf = key.split(".")[1]
            if profile != "smoke":  # smoke sets every architecture's sizes for the tests
                assert c.model[leaf] == default[leaf], (profile, key)


def test_bench_times_lrcn_full_cpu_without_generating_its_60000_scans(tmp_path):
    from common import bench

    c = scanline_configs.get_config("lrcn_full_cpu")
    assert c.synth.n == 60_000
    c.data_dir, c.num_devices, c.batch_size = str(tmp_path / "cache"), 1, 4
    c.compilation_cache_dir = ""
    record = bench.compile_only(c)  # the timed path builds the step the same way (prepare)
    assert record["num_params"] == README_PARAMS["lrcn_full_cpu"]  # the profile's model
    assert record["xla_flops_per_step"] > 0
    assert not (tmp_path / "cache").exists()  # no data set generated or read
