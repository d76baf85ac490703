"""Damaged checkpoints and changed commands: a run resumes from what is intact, says so in one
line, and never loses a file."""

import glob
import json
import logging
import os
import shutil

import pytest

from common import checkpoint
from common.checkpoint import CheckpointError
from tests.common.conftest import run

RUN = dict(max_steps=16, checkpoint_every_steps=8, final_eval_splits=("test",))


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    """One finished run (checkpoints 8 and 16) to copy and damage."""
    workdir = tmp_path_factory.mktemp("failsafe") / "run"
    result = run(workdir, **RUN)
    assert sorted(os.listdir(workdir / "checkpoints")) == ["16", "8"]
    return workdir, result


def _files(folder) -> dict[str, int]:
    return {
        os.path.relpath(p, folder): os.path.getsize(p)
        for p in glob.glob(os.path.join(folder, "**"), recursive=True)
        if os.path.isfile(p)
    }


def _truncate_array_files(step_dir):
    # Every data file of the array store: which one holds which array is orbax's business.
    for path in glob.glob(f"{step_dir}/state/**/d/*", recursive=True):
        with open(path, "r+b") as f:
            f.truncate(os.path.getsize(path) // 2)


def _junk_metadata(step_dir):
    with open(os.path.join(step_dir, "meta", "metadata"), "w") as f:
        f.write("{not json")


def _delete_state(step_dir):
    shutil.rmtree(os.path.join(step_dir, "state"))


@pytest.mark.parametrize("damage", [_truncate_array_files, _junk_metadata, _delete_state])
def test_a_damaged_latest_step_is_set_aside_and_the_run_resumes_from_the_older_one(
    finished, tmp_path, caplog, damage
):
    caplog.set_level(logging.INFO)
    source, uninterrupted = finished
    workdir = tmp_path / "run"
    shutil.copytree(source, workdir)
    damage(str(workdir / "checkpoints" / "16"))
    damaged_files = _files(workdir / "checkpoints" / "16")

    again = run(workdir, **RUN)  # the same command again

    assert again.status == "completed" and again.step == 16
    warnings = [r.getMessage() for r in caplog.records if "is damaged" in r.getMessage()]
    assert len(warnings) == 1 and warnings[0].startswith("checkpoint step 16 is damaged (")
    assert "\n" not in warnings[0] and len(warnings[0]) < 500
    assert any(
        "resumed from" in r.getMessage() and "step 8" in r.getMessage() for r in caplog.records
    )
    # Nothing lost: the damaged step is kept, file for file, beside the checkpoints.
    assert _files(workdir / "damaged_checkpoints" / "16") == damaged_files
    # Steps 8..16 were trained again to the same result as the uninterrupted run.
    assert again.final_metrics == pytest.approx(uninterrupted.final_metrics, rel=1e-6)


def test_refusing_a_damaged_checkpoint_touches_nothing(finished, tmp_path):
    source, _ = finished
    workdir = tmp_path / "run"
    shutil.copytree(source, workdir)
    _junk_metadata(str(workdir / "checkpoints" / "16"))
    before = _files(workdir)
    with pytest.raises(CheckpointError, match=r"checkpoint step 16 in .* is damaged \(") as e:
        run(workdir, on_damaged_checkpoint="refuse", **RUN)
    assert "\n" not in str(e.value) and "on_damaged_checkpoint=use_older" in str(e.value)
    assert _files(workdir) == before


def test_tools_fall_back_to_the_newest_readable_step_and_name_a_bad_one(finished, tmp_path):
    source, _ = finished
    workdir = tmp_path / "run"
    shutil.copytree(source, workdir)
    _delete_state(str(workdir / "checkpoints" / "16"))
    before = _files(workdir)
    assert checkpoint.load_run(str(workdir), "latest").step == 8
    with pytest.raises(CheckpointError, match=r"checkpoint step 16 in .* cannot be read \("):
        checkpoint.load_run(str(workdir / "checkpoints" / "16"))
    assert _files(workdir) == before  # tools read, they never move or delete


def test_checkpoints_of_another_model_are_not_taken_for_damage(finished, tmp_path):
    source, _ = finished
    workdir = tmp_path / "run"
    shutil.copytree(source, workdir)
    os.remove(workdir / "config.json")  # so that only the checkpoints can tell
    with pytest.raises(CheckpointError, match=r"hold another model than this config builds \("):
        run(workdir, **{**RUN, "tiny.hidden": 32})
    assert not os.path.exists(workdir / "damaged_checkpoints")
    assert sorted(os.listdir(workdir / "checkpoints")) == ["16", "8"]


def test_resume_changes_sorts_safe_from_shaping_keys():
    from common.config import resume_changes

    saved = {"learning_rate": 1e-3, "model": {"width": 8}, "optim": {"name": "adamw", "b1": 0.9}}
    wanted = {
        "learning_rate": 5e-4,
        "model": {"width": 16},
        "optim": {"name": "sgd", "b1": 0.95},
        "new_option": 1,
    }
    accepted, refused = resume_changes(saved, wanted)
    assert accepted == [("learning_rate", 1e-3, 5e-4), ("optim.b1", 0.9, 0.95)]
    assert refused == [("model.width", 8, 16), ("optim.name", "adamw", "sgd")]
    assert resume_changes(saved, wanted, safe=("model.",))[1] == [("optim.name", "adamw", "sgd")]
    assert resume_changes({"s": [1, 2]}, {"s": (1, 2)}) == ([], [])  # JSON turned a tuple to a list


def test_a_changed_model_is_refused_before_anything_is_written(finished, tmp_path):
    from common.config import ConfigError

    source, _ = finished
    workdir = tmp_path / "run"
    shutil.copytree(source, workdir)
    before = _files(workdir)
    config_before = (workdir / "config.json").read_text()
    with pytest.raises(ConfigError, match=r"started with tiny\.hidden=16; this command says 32"):
        run(workdir, **{**RUN, "tiny.hidden": 32})
    assert (workdir / "config.json").read_text() == config_before
    assert _files(workdir) == before


def test_a_changed_schedule_is_applied_logged_and_the_old_config_kept(finished, tmp_path, caplog):
    caplog.set_level(logging.INFO)
    source, _ = finished
    workdir = tmp_path / "run"
    shutil.copytree(source, workdir)
    config_before = json.loads((workdir / "config.json").read_text())
    result = run(workdir, **{**RUN, "max_steps": 24, "learning_rate": 0.02})
    assert result.status == "completed" and result.step == 24
    assert any(
        "resuming at step 16 with a changed config: "
        "learning_rate: 0.05 -> 0.02; max_steps: 16 -> 24" in r.getMessage()
        for r in caplog.records
    )
    assert json.loads((workdir / "config.16.json").read_text()) == config_before
    assert json.loads((workdir / "config.json").read_text())["max_steps"] == 24


def _cli(workdir, *flags):
    import subprocess

    from tests.common.conftest import tiny_cli

    proc = tiny_cli(workdir, *flags, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    out, err = proc.communicate(timeout=300)
    return proc.returncode, out, err


@pytest.mark.parametrize(
    "flags, message",
    [
        (["--config.batch_size=0"], "error: config.batch_size=0 must be a positive whole number"),
        (["--config.batch_size=-4"], "error: config.batch_size=-4 must be a positive whole number"),
        (["--config.learning_rate=-0.1"], "error: config.learning_rate=-0.1 must be >= 0"),
        (
            ["--config.dtype=float16"],
            "error: config.dtype='float16' is not supported (float16 needs loss scaling",
        ),
    ],
)
def test_bad_input_is_one_line_and_exit_2_before_any_work(tmp_path, flags, message):
    code, _, err = _cli(tmp_path / "run", *flags)
    assert code == 2 and "Traceback" not in err, err[-2000:]
    assert err.strip().splitlines()[-1].startswith(message), err[-2000:]
    assert not os.path.exists(tmp_path / "run" / "checkpoints")


def test_a_workdir_that_is_a_file_is_refused_and_kept(tmp_path):
    path = tmp_path / "notes.txt"
    path.write_text("mine")
    code, _, err = _cli(path)
    assert code == 2 and "Traceback" not in err
    assert f"error: --workdir {path} is a file; name a directory" in err
    assert path.read_text() == "mine"


def test_help_lists_profiles_and_keys_and_print_config_does_no_work(tmp_path):
    code, out, _ = _cli(tmp_path / "run", "--help")
    assert code == 0 and "profiles: default, smoke" in out
    assert "batch_size" in out and "# GLOBAL train batch" in out and "tiny.hidden" in out
    code, out, err = _cli(tmp_path / "run", "--config.max_steps=3", "--print_config")
    assert code == 0 and "max_steps: 3" in out, err[-2000:]
    assert not os.path.exists(tmp_path / "run")


def test_human_eta():
    from common.metrics import human_duration

    assert [human_duration(m) for m in (0.4, 12.3, 72.4, 600)] == [
        "24 s",
        "12 min",
        "1 h 12 min",
        "10 h 0 min",
    ]


def test_progress_bar_on_a_terminal_only_and_cleared_before_log_lines(capsys):
    import logging as logging_lib

    from common.metrics import ProgressBar

    assert ProgressBar.render(520, 1000, 3.2) == (
        "[################..............]  52%  step 520/1000  ETA 3 min"
    )
    assert ProgressBar.render(0, 10, None) == "[..............................]   0%  step 0/10"
    quiet = ProgressBar(10)  # pytest's stderr is not a terminal
    quiet.update(5, 1.0)
    assert not quiet.enabled and capsys.readouterr().err == ""
    bar = ProgressBar(10, enabled=True)
    handler = logging_lib.StreamHandler()
    logging_lib.getLogger().addHandler(handler)
    try:
        bar.install()
        bar.update(5, 1.0)
        logging_lib.getLogger().warning("a log line")
        bar.uninstall()
    finally:
        logging_lib.getLogger().removeHandler(handler)
    err = capsys.readouterr().err
    assert err.startswith("\r\033[K[###############")  # drawn in place
    assert "step 5/10  ETA 1 min\r\033[Ka log line\n" in err  # cleared before the log line
