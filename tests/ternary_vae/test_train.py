"""Both stages through the real loop (smoke profile): interruption + resume, frozen groups."""

import json
import os

import jax
import numpy as np
import pytest

from common.checkpoint import load_run
from common.cli import load_config_file
from common.config import set_value
from common.evaluate import evaluate_run
from ternary_vae.task import TernaryVaeTask
from ternary_vae.two_stage import STAGE0_DIR, STAGE0_MARKER, train_two_stages


def smoke_config(**overrides):
    config = load_config_file("configs/ternary_vae.py:smoke")
    for key, value in overrides.items():
        set_value(config, key, value)
    return config


def _tree_equal(a, b) -> bool:
    return all(
        np.array_equal(np.asarray(x), np.asarray(y))
        for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b))
    )


@pytest.fixture(scope="module")
def interrupted_then_resumed(tmp_path_factory):
    """Three invocations of the one command: stopped in stage 0, stopped in stage 1, finished."""
    workdir = str(tmp_path_factory.mktemp("tvae") / "run")
    first = train_two_stages(TernaryVaeTask, smoke_config(stop_after_steps=3), workdir)
    second = train_two_stages(TernaryVaeTask, smoke_config(stop_after_steps=3), workdir)
    third = train_two_stages(TernaryVaeTask, smoke_config(), workdir)
    return workdir, (first, second, third)


def test_two_stage_run_resumes_where_it_stopped(interrupted_then_resumed):
    workdir, (first, second, third) = interrupted_then_resumed
    stage0 = os.path.join(workdir, STAGE0_DIR)
    # 1st call: stage 0 interrupted after 3 of its 4 steps; stage 1 not started.
    assert first.status == "stopped" and first.step == 3
    assert first.workdir == os.path.abspath(stage0)
    # 2nd call: stage 0 resumed and finished (marker), stage 1 stopped after 3 of 6 steps.
    with open(os.path.join(stage0, STAGE0_MARKER)) as f:
        assert json.load(f)["step"] == 4
    assert second.status == "stopped" and second.step == 3
    # 3rd call: stage 0 skipped, stage 1 resumed at step 3 and completed at 6.
    assert third.status == "completed" and third.step == 6
    with open(os.path.join(workdir, "metrics.jsonl")) as f:
        steps = [json.loads(line)["step"] for line in f]
    assert min(steps) >= 3 and max(steps) == 6
    final = third.final_metrics
    for key in ("coverage", "hierarchy_b", "richness_b", "q_b", "select", "hierarchy_ceiling"):
        assert np.isfinite(final[f"final/val/{key}"]), key
    assert final["final/val/hierarchy_ceiling"] == pytest.approx(-0.8320502954, abs=1e-9)
    # Offline evaluation of the stage-1 run is the loop's final evaluation.
    again = evaluate_run(workdir, which="best", splits=["val"])
    assert again["checkpoint_step"] == final["final/checkpoint_step"]
    for key, value in final.items():
        if key.startswith("final/val/"):
            assert again[key.removeprefix("final/")] == pytest.approx(value, rel=1e-6), key


def test_frozen_groups_do_not_move_and_state_is_checkpointed(interrupted_then_resumed):
    workdir, _ = interrupted_then_resumed
    s0 = load_run(os.path.join(workdir, STAGE0_DIR), "best")
    s1 = load_run(workdir, "latest")
    # encoder A and the decoder are frozen in stage 1 (lr scale 0): bit-identical.
    assert _tree_equal(s0.params["encoder_a"], s1.params["encoder_a"])
    assert _tree_equal(s0.params["decoder"], s1.params["decoder"])
    # encoder B (started as a copy of A) and the projections trained.
    assert not _tree_equal(s0.params["encoder_a"], s1.params["encoder_b"])
    assert not _tree_equal(s0.params["projection_b"], s1.params["projection_b"])
    # stage 0 trained only A + decoder: B and the projections kept the loop's init.
    init_rng = jax.random.split(jax.random.PRNGKey(s0.config.seed))[0]
    task0 = TernaryVaeTask(s0.config)
    init = task0.init_variables(init_rng, {"trits": np.zeros((2, 9), np.float32)})["params"]
    for name in ("encoder_b", "projection_a", "projection_b"):
        assert _tree_equal(init[name], s0.params[name]), name
    assert not _tree_equal(init["encoder_a"], s0.params["encoder_a"])
    # the controls, the homeostasis state and the richness reference are in the checkpoint
    assert s1.controls["lr_scale/encoder_a"] == 0.0 and s1.controls["lr_scale/decoder"] == 0.0
    assert "homeostasis" in s1.meta["task_state"]
    assert float(s1.extras["reference"]["recorded"]) == 1.0


def test_init_from_copies_encoder_a_into_b():
    config = smoke_config()
    task = TernaryVaeTask(config)
    batch = {"trits": np.zeros((2, 9), np.float32)}
    loaded = task.init_variables(jax.random.key(0), batch)["params"]
    fresh = task.init_variables(jax.random.key(1), batch)["params"]
    params = task.init_from_params(loaded, fresh)
    assert _tree_equal(params["encoder_b"], loaded["encoder_a"])
    assert _tree_equal(params["encoder_a"], loaded["encoder_a"])
    assert _tree_equal(params["decoder"], loaded["decoder"])
    assert _tree_equal(params["projection_a"], fresh["projection_a"])
    bad = dict(loaded)
    del bad["decoder"]
    with pytest.raises(KeyError, match="decoder"):
        task.init_from_params(bad, fresh)


def test_analysis_reports_the_loops_figures_and_draws_the_ball(interrupted_then_resumed, tmp_path):
    from ternary_vae.analyze import analyze

    workdir, (_, _, third) = interrupted_then_resumed
    report = analyze(workdir, str(tmp_path))
    best = report["best"]["metrics"]
    assert best["step"] == third.final_metrics["final/checkpoint_step"]
    for key in ("coverage", "hierarchy_b", "richness_b", "q_b"):
        assert best[key] == pytest.approx(third.final_metrics[f"final/val/{key}"], rel=1e-6)
    assert len(best["level_means_b"]) == 10
    for name in ("radius_by_valuation_best.png", "ball_b_latest.png", "metrics.json"):
        assert (tmp_path / name).is_file(), name


def test_a_trained_run_is_usable_from_python(interrupted_then_resumed):
    import common
    from ternary_vae import ternary

    workdir, (_, _, third) = interrupted_then_resumed
    trained = common.load_run(workdir)
    ops = ternary.all_operations()
    out = trained.predict({"trits": ops["trits"]})
    coverage = float(np.all(out["decoded"] == ops["trits"], axis=1).mean())
    assert trained.step == third.final_metrics["final/checkpoint_step"]
    assert coverage == pytest.approx(third.final_metrics["final/val/coverage"], abs=1e-9)
    assert out["z_b"].shape == (3**9, trained.config.model.latent_dim)
    assert np.all(np.linalg.norm(out["z_b"], axis=1) <= trained.config.model.max_radius + 1e-6)
