"""Command-line entry shared by every family: flags, checks, distributed init, then the loop.

    python -m <family>.main --config=configs/<family>.py[:profile] [--workdir=DIR]
                            [--config.learning_rate=5e-4 --config.model.num_layers=12 ...]

A family's ``main.py`` is one call: ``cli.run(TaskClass)``.
"""

import contextlib
import functools
import importlib.util
import os
import re
import sys
import traceback
from collections.abc import Callable

import ml_collections

from common.config import ConfigError, validate_override_keys

TrainFn = Callable[[type, ml_collections.ConfigDict, str], object]

_OVERRIDE = re.compile(r"^--config\.([A-Za-z0-9_.]+)(=.*)?$")


def load_config_file(spec: str) -> ml_collections.ConfigDict:
    """Loads ``path/to/config.py[:arg]`` by calling its ``get_config(arg)``."""
    path, _, arg = spec.partition(":")
    if not os.path.isfile(path):
        raise ConfigError(f"config file '{path}' does not exist (from --config={spec})")
    module_spec = importlib.util.spec_from_file_location("_jaxfam_config", path)
    module = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(module)
    return module.get_config(arg or None)


def _precheck_argv(argv: list[str]) -> None:
    """Fails early, with the valid choices, on unknown profiles and unknown override keys."""
    spec = next((a.split("=", 1)[1] for a in argv if a.startswith("--config=")), None)
    if spec is None:
        raise ConfigError("missing --config=configs/<family>.py[:profile]")
    config = load_config_file(spec)
    keys = [m.group(1) for a in argv if (m := _OVERRIDE.match(a))]
    validate_override_keys(config, keys)


def parse_config_overrides(config: ml_collections.ConfigDict, args: list[str]) -> dict[str, str]:
    """``--config.a.b=value`` flags -> {"a.b": "value"}, every key checked against `config`.

    For tools that load a saved config (no config file to hand to absl's config flags); apply
    the texts with `common.config.set_from_text`, which types them like the field."""
    out = {}
    for arg in args:
        m = _OVERRIDE.match(arg)
        if not m or not m.group(2):
            raise ConfigError(f"expected --config.<key>=<value>, got '{arg}'")
        out[m.group(1)] = m.group(2)[1:]
    validate_override_keys(config, list(out))
    return out


def load_config(spec: str, overrides: list[str] = ()) -> ml_collections.ConfigDict:
    """``configs/x.py[:profile]`` with ``--config.a.b=value`` flags applied (keys checked,
    values typed like their fields): the config a training command would get, for tools
    outside absl's flags (benchmarks/)."""
    from common.config import set_from_text

    config = load_config_file(spec)
    for key, text in parse_config_overrides(config, list(overrides)).items():
        set_from_text(config, key, text)
    return config


@contextlib.contextmanager
def user_errors(verbose: bool = False, log_dir: str | None = None):
    """The one handler every command line puts around its work: an error the user can act on
    (a config value, a missing or damaged file, a run that does not fit the command) becomes
    one line on stderr, ``error: <what and how to fix it>``, and exit status 2 (1 for a loss
    that became non-finite); the traceback goes to ``<log_dir>/error.log`` when there is a run
    directory, or to the terminal with `verbose`."""
    from common.checkpoint import CheckpointError, NonFiniteLossError

    try:
        yield
    except Exception as e:
        ours = type(e).__module__.split(".")[0] in _PROJECT_PACKAGES
        known = (ConfigError, CheckpointError, NonFiniteLossError, OSError, ValueError)
        if verbose or not (ours or isinstance(e, known)):
            raise
        lines = [line.rstrip() for line in str(e).strip().splitlines() if line.strip()]
        # Our own messages are written to be read whole; a library's first line says enough.
        message = "\n".join(lines) if ours else (lines[0] if lines else type(e).__name__)
        if isinstance(e, OSError) and e.filename and str(e.filename) not in message:
            message = f"{message}: {e.filename}"
        where = " (run again with --verbose for the traceback)"
        if log_dir and os.path.isdir(log_dir):
            path = os.path.join(log_dir, "error.log")
            with open(path, "a") as f:
                f.write(traceback.format_exc() + "\n")
            where = f" (traceback in {path})"
        print(f"error: {message}{where}", file=sys.stderr, flush=True)
        sys.exit(1 if isinstance(e, NonFiniteLossError) else 2)


_PROJECT_PACKAGES = ("common", "vit", "scanline", "mathart", "ternary_vae", "tests")


def handles_user_errors(main: Callable) -> Callable:
    """Decorates an argparse ``main(argv)`` with `user_errors` (``--verbose`` in argv shows
    the traceback; the parser must accept the flag)."""

    @functools.wraps(main)
    def wrapped(argv=None):
        argv = list(sys.argv[1:] if argv is None else argv)
        with user_errors("--verbose" in argv):
            return main(argv)

    return wrapped


def add_run_arguments(parser, *, which_default: str = "best") -> None:
    """The one way every tool that reads a finished run names it: ``RUN_DIR`` (a run directory,
    its checkpoints/ folder or one checkpoints/<step> folder; ``--workdir`` is the same) and
    ``--which best|latest|STEP``. Read them back with `run_arguments`."""
    parser.add_argument(
        "run_dir", nargs="?", help="a run directory, its checkpoints/ or checkpoints/<step>"
    )
    parser.add_argument("--workdir", dest="workdir_flag", default=None, help="same as RUN_DIR")
    parser.add_argument(
        "--which", default=which_default, help="checkpoint: best | latest | a step number"
    )
    parser.add_argument("--verbose", action="store_true", help="tracebacks for errors")


def run_arguments(parser, args) -> tuple[str, str]:
    """(run directory, which) from `add_run_arguments`' flags; a usage error when missing."""
    run_dir = args.run_dir or args.workdir_flag
    if not run_dir:
        parser.error("name the run: RUN_DIR (or --workdir RUN_DIR)")
    if args.run_dir and args.workdir_flag and args.run_dir != args.workdir_flag:
        parser.error(f"two runs named: '{args.run_dir}' and --workdir '{args.workdir_flag}'")
    if args.which not in ("best", "latest") and not args.which.isdigit():
        parser.error(f"--which must be best, latest or a step number, got '{args.which}'")
    return run_dir, args.which


_ASSIGNMENT = re.compile(r"^\s*c\.([A-Za-z0-9_.]+)\s*=\s*[^#]*?(?:#\s*(.*))?$")


def _key_comments(*paths: str) -> dict[str, str]:
    """dotted key -> the comment on (or the comment block just above) its first assignment
    ``c.<key> = ...`` in the given config files: the meanings `--help` prints."""
    meanings: dict[str, str] = {}
    for path in paths:
        block: list[str] = []
        with open(path) as f:
            for line in f:
                stripped = line.strip()
                if stripped.startswith("#"):
                    block.append(stripped.lstrip("# "))
                    continue
                m = _ASSIGNMENT.match(line)
                if m and m.group(1) not in meanings:
                    text = m.group(2) or " ".join(block)
                    if text:
                        meanings[m.group(1)] = text
                block = []
    return meanings


def config_help(task_cls: type, argv: list[str]) -> str:
    """What ``--help`` prints: the command, the profiles, every config key with its default
    (in the chosen profile) and its meaning, from the config files' own comments."""
    from common import config as config_lib

    family = task_cls.__module__.split(".")[0]
    spec = next((a.split("=", 1)[1] for a in argv if a.startswith("--config=")), None)
    spec = spec or f"configs/{family}.py"
    path = spec.partition(":")[0]
    config = load_config_file(spec)
    module_spec = importlib.util.spec_from_file_location("_jaxfam_config_help", path)
    module = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(module)
    profiles = getattr(module, "PROFILES", ())
    meanings = _key_comments(config_lib.__file__, path)
    lines = [
        f"python -m {family}.main --config={path}[:PROFILE] [--workdir=DIR] "
        "[--config.KEY=VALUE ...] [--print_config] [--verbose]",
        "",
        f"profiles: {', '.join(profiles) or '(none)'}",
        f"keys, with their values in {spec} (set any with --config.KEY=VALUE):",
    ]
    flat = config_lib.flatten(config.to_dict())
    width = min(max(len(k) for k in flat), 36)
    for key, value in flat.items():
        meaning = meanings.get(key, "")
        lines.append(f"  {key:{width}s} = {value!r}" + (f"    # {meaning}" if meaning else ""))
    return "\n".join(lines)


_READ_ONLY_NOTES = ("CheckpointManagerOptions.read_only=True", "Given directory is read only")


def quiet_library_logs() -> None:
    """Orbax logs every save at INFO through absl; keep its warnings, drop the chatter."""
    import logging

    def keep(record: logging.LogRecord) -> bool:
        if "orbax" not in record.pathname:
            return True
        # Another run (init_from, evaluation, resume_from) is opened read-only on purpose, so
        # that nothing can write into it; orbax warns about that twice on every open.
        message = str(record.msg)
        return record.levelno >= logging.WARNING and not message.startswith(_READ_ONLY_NOTES)

    for handler in logging.getLogger().handlers:
        handler.addFilter(keep)
    logging.getLogger("absl").addFilter(keep)
    # jax reports at INFO every backend it could not start ("Unable to initialize backend
    # 'tpu'") on every CPU and GPU host: noise for everyone who did not ask for that backend.
    logging.getLogger("jax._src.xla_bridge").setLevel(logging.WARNING)


def default_workdir(config: ml_collections.ConfigDict) -> str:
    """runs/<family>_<profile>: stable, so rerunning the same command resumes the same run."""
    family = config.task.split(".")[0] if config.task else "run"
    return os.path.join("runs", f"{family}_{config.profile or 'default'}")


def check_command(task_cls: type, config: ml_collections.ConfigDict, override_keys) -> None:
    """Refuses a command whose config names another Task (bench and evaluate build the Task
    ``config.task`` names: training must agree), or that sets a key the config's own choices
    make the Task ignore."""
    from common.task import task_class

    if config.get("task") and task_class(config) is not task_cls:
        raise ConfigError(
            f"config.task is '{config.task}' but this command trains "
            f"{task_cls.__module__}:{task_cls.__name__}; use that family's config file"
        )
    ignored = task_cls.ignored_settings(config)
    for key in override_keys:
        if key in ignored:
            raise ConfigError(f"--config.{key} has no effect: {ignored[key]}")


def run(
    task_cls: type,
    *,
    workdir_fn: Callable[[ml_collections.ConfigDict], str] = default_workdir,
    train_fn: TrainFn | None = None,
    argv: list[str] | None = None,
) -> None:
    """Parses flags, prepares the process and runs ``train_fn(task_cls, config, workdir)``."""
    argv = list(sys.argv if argv is None else argv)
    if any(a in ("-h", "--help", "--helpfull", "--helpshort") for a in argv[1:]):
        try:
            print(config_help(task_cls, argv[1:]))
        except ConfigError as e:
            print(f"error: {e}", file=sys.stderr)
            sys.exit(2)
        sys.exit(0)
    try:
        _precheck_argv(argv[1:])
    except ConfigError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)

    from absl import app, flags
    from ml_collections import config_flags

    flags_def = flags.FLAGS
    config_flags.DEFINE_config_file(
        "config", None, "configs/<family>.py[:profile]", lock_config=True
    )
    flags.DEFINE_string("workdir", None, "run directory (default: derived from the config)")
    flags.DEFINE_bool("verbose", False, "show tracebacks instead of one-line errors")
    flags.DEFINE_bool("print_config", False, "print the resolved config and exit")

    def _main(_):
        from common import parallel  # imports jax: only after flags are parsed

        quiet_library_logs()
        config = flags_def.config
        try:
            check_command(task_cls, config, [m.group(1) for a in argv if (m := _OVERRIDE.match(a))])
        except ConfigError as e:
            print(f"error: {e}", file=sys.stderr)
            sys.exit(2)
        if flags_def.print_config:
            print(config)
            return
        # jax.distributed.initialize() must run before anything touches a device.
        parallel.maybe_initialize_distributed(config)
        workdir = flags_def.workdir or workdir_fn(config)
        if train_fn is None:
            from common.train import train_and_evaluate as train
        else:
            train = train_fn
        log_dir = workdir if os.path.isdir(workdir) else None
        with user_errors(flags_def.verbose, log_dir):
            result = train(task_cls, config, workdir)
        status = getattr(result, "status", "completed")
        print(f"run {status}: {os.path.abspath(workdir)}", flush=True)

    app.run(_main, argv=argv)
