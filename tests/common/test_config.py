"""Profiles, overrides and durations: errors name the problem and the valid choices."""

import pytest

from common import cli
from common.config import ConfigError, base_config, parse_profile, steps_from
from tests.common import tiny_config


def test_unknown_profile_lists_valid_ones():
    with pytest.raises(ConfigError) as e:
        tiny_config.get_config("smok")
    msg = str(e.value)
    assert "unknown profile 'smok'" in msg
    assert "did you mean 'smoke'" in msg
    assert "choose one of: default, smoke" in msg


def test_parse_profile_default():
    assert parse_profile(None, choices=("a", "b"), default="b", config_file="x.py") == "b"


def test_unknown_override_key_lists_valid_keys():
    argv = ["--config=tests/common/tiny_config.py", "--config.optim.learning_rat=3"]
    with pytest.raises(ConfigError) as e:
        cli._precheck_argv(argv)
    msg = str(e.value)
    assert "unknown config key 'optim.learning_rat'" in msg
    assert "valid keys of config.optim:" in msg and "weight_decay" in msg
    argv = ["--config=tests/common/tiny_config.py", "--config.tiny.hiden=3"]
    with pytest.raises(ConfigError, match="did you mean 'hidden'"):
        cli._precheck_argv(argv)


def test_known_override_keys_pass_and_missing_file_fails():
    cli._precheck_argv(["--config=tests/common/tiny_config.py:smoke", "--config.tiny.hidden=3"])
    with pytest.raises(ConfigError, match="does not exist"):
        cli._precheck_argv(["--config=configs/nope.py"])


def test_cli_exits_with_message_on_bad_profile(capsys):
    with pytest.raises(SystemExit) as e:
        cli.run(object, argv=["prog", "--config=tests/common/tiny_config.py:bogus"])
    assert e.value.code == 2
    assert "unknown profile 'bogus'" in capsys.readouterr().err


def test_seed_flag_names_exist_in_base_config():
    c = base_config()
    for name in ("batch_size", "learning_rate", "max_epochs", "max_training_hours", "resume_from"):
        assert name in c


def test_steps_from():
    assert steps_from(epochs=2.5, steps=None, steps_per_epoch=10, what="x") == 25
    assert steps_from(epochs=None, steps=7, steps_per_epoch=10, what="x") == 7
    assert steps_from(epochs=None, steps=None, steps_per_epoch=10, what="x", required=False) is None
    assert steps_from(epochs=1.0, steps=3, steps_per_epoch=10, what="x") == 3  # steps win
    with pytest.raises(ConfigError, match="set \\*_epochs or \\*_steps"):
        steps_from(epochs=None, steps=None, steps_per_epoch=10, what="x")


def test_training_refuses_a_config_that_names_another_task():
    from tests.common.tiny_task import TinyTask
    from vit.task import VitTask

    config = cli.load_config_file("tests/common/tiny_config.py")
    cli.check_command(TinyTask, config, [])
    with pytest.raises(ConfigError, match=r"config\.task is 'tests\.common\.tiny_task:TinyTask' "):
        cli.check_command(VitTask, config, [])


def _leaves(config, prefix=""):
    for key, value in config.items():
        if hasattr(value, "items"):
            yield from _leaves(value, f"{prefix}{key}.")
        else:
            yield prefix + key


@pytest.mark.parametrize("family", ["vit", "scanline", "mathart", "ternary_vae"])
def test_every_config_key_is_read_by_some_code(family):
    """A key nothing reads is a setting that silently does nothing (or an alias of another):
    every leaf of every profile must be named, as an attribute or a string, by some module
    outside configs/ and tests/ that also names the key's section."""
    import importlib
    import pathlib
    import re

    root = pathlib.Path(__file__).resolve().parents[2]
    sources = [
        p.read_text()
        for p in root.rglob("*.py")
        if p.relative_to(root).parts[0] not in ("configs", "tests", ".venv", ".whl", ".data")
    ]
    module = importlib.import_module(f"configs.{family}")
    keys = {k for profile in module.PROFILES for k in _leaves(module.get_config(profile))}
    unread = []
    for dotted in sorted(keys):
        *parents, leaf = dotted.split(".")
        named = re.compile(rf"\.{leaf}\b|[\"']{leaf}[\"']")
        section = re.compile(rf"\b{parents[-1]}\b") if parents else None
        if not any(named.search(s) and (section is None or section.search(s)) for s in sources):
            unread.append(dotted)
    assert not unread, f"configs/{family}.py keys no code reads: {unread}"


def test_every_tool_names_a_run_the_same_way(capsys):
    import argparse

    def parse(*argv):
        parser = argparse.ArgumentParser(prog="tool")
        cli.add_run_arguments(parser)
        return cli.run_arguments(parser, parser.parse_args(list(argv)))

    assert parse("runs/a") == ("runs/a", "best")
    assert parse("--workdir", "runs/a", "--which", "120") == ("runs/a", "120")
    assert parse("runs/a", "--workdir", "runs/a", "--which", "latest") == ("runs/a", "latest")
    for argv, message in [
        ((), "name the run: RUN_DIR"),
        (("runs/a", "--workdir", "runs/b"), "two runs named"),
        (("runs/a", "--which", "newest"), "--which must be best, latest or a step number"),
    ]:
        with pytest.raises(SystemExit) as e:
            parse(*argv)
        assert e.value.code == 2 and message in capsys.readouterr().err


def test_load_config_applies_typed_checked_overrides():
    from common.cli import load_config

    c = load_config("configs/vit.py:smoke", ["--config.batch_size=16", "--config.rng_impl=rbg"])
    assert c.batch_size == 16 and c.rng_impl == "rbg" and c.profile == "smoke"
    with pytest.raises(ConfigError, match="batch_sise"):
        load_config("configs/vit.py:smoke", ["--config.batch_sise=16"])
