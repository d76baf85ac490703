"""Fetch the wheels an offline JAX GPU machine lacks, so that this project runs there.

Why: our GPU machines (and many users') run a JAX CUDA image (Python 3.12, manylinux x86-64,
jax/jaxlib with the CUDA plugin, flax, optax, orbax, tensorboard, numpy, ...) with no network.
The project's base dependencies (`[project].dependencies` in pyproject.toml) also need clu,
ml-collections and tensorflow-datasets (without TensorFlow), which the image lacks. This tool
resolves the whole dependency closure of those dependencies for the target (cp312, manylinux
x86-64, wheels only) with pip, drops every package the image already has (by name: the image's
own jax/flax/numpy are never replaced; what they depend on counts as installed with them,
except what an extra asks for, e.g. `etils[epath]`), and downloads exactly the rest into one
folder that is small enough to carry over:

    python tools/offline_wheels.py [--have FREEZE.txt] [--out .whl] [--max-mib 48]
                                   [--with-image-deps] [--verbose]
    make offline-wheels [HAVE=FREEZE.txt]

`--have` takes `python3 -m pip list --format=freeze` (or `pip freeze`) run on the target
machine; without it a built-in list of what a typical JAX CUDA container holds is used. It
prints each wheel with its size and the total, fails (exit 1) when the total exceeds the
budget, and prints the install line for the target machine:

    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
        --target /tmp/site .whl/*.whl && export PYTHONPATH=/tmp/site:$PYTHONPATH

Needs network to PyPI (or a configured index) where it runs; the target needs none. A package
published only as a source distribution (tensorflow-datasets needs `promise`, sdist-only) is
built here into a wheel, which must come out pure Python (`py3-none-any`) to be usable there.
Mistakes a user can make (no pyproject, unreadable --have file, no network) end in one line
on stderr and exit code 2.
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import tempfile
import tomllib
from collections.abc import Collection
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import unquote, urlparse

try:  # the `packaging` distribution where installed, else pip's vendored copy (same API)
    from packaging.markers import Marker
    from packaging.requirements import InvalidRequirement, Requirement
    from packaging.version import InvalidVersion, Version
except ImportError:  # pragma: no cover - depends on the environment
    from pip._vendor.packaging.markers import Marker
    from pip._vendor.packaging.requirements import InvalidRequirement, Requirement
    from pip._vendor.packaging.version import InvalidVersion, Version

REPO = Path(__file__).resolve().parent.parent
PROG = "offline_wheels"

# What a typical JAX CUDA container (the offline GPU image we and our users run on) already
# holds, as PEP 503 names: none of these is ever downloaded. `--have FILE` replaces this with
# the exact list from the target machine.
DEFAULT_IMAGE: frozenset[str] = frozenset(
    {
        "jax", "jaxlib", "jax-cuda12-plugin", "jax-cuda12-pjrt", "flax", "optax",
        "orbax-checkpoint", "chex", "tensorboard", "numpy", "scipy", "matplotlib", "pillow",
        "h5py", "absl-py", "etils", "protobuf", "pyarrow", "psutil", "requests", "tqdm", "wrapt",
        "pyyaml", "typing-extensions", "packaging", "msgpack", "rich", "treescope",
        "tensorstore", "ml-dtypes", "opt-einsum", "simplejson", "attrs", "six", "setuptools",
    }
)  # fmt: skip

PYTHON_VERSION = "3.12"
# manylinux x86-64 tags the image's glibc (2.28 or newer) accepts: manylinux_2_28 down to
# manylinux_2_5 and the legacy aliases (manylinux2014 = 2_17, manylinux2010 = 2_12,
# manylinux1 = 2_5), newest first. pip adds the pure-Python `any` wheels itself.
PLATFORMS: tuple[str, ...] = (
    *(f"manylinux_2_{minor}_x86_64" for minor in range(28, 4, -1)),
    "manylinux2014_x86_64",
    "manylinux2010_x86_64",
    "manylinux1_x86_64",
)
DEFAULT_MAX_MIB = 48.0  # leaves room for data within a 64 MiB transfer limit
MIB = 1 << 20

# pip output that means it could not reach the index at all.
_NETWORK_SIGNS = (
    "NewConnectionError",
    "Failed to establish a new connection",
    "Temporary failure in name resolution",
    "Name or service not known",
    "Network is unreachable",
    "ConnectTimeoutError",
    "ProxyError",
    "Max retries exceeded",
    "SSLError",
)


class UserError(Exception):
    """A problem the user can fix; main() prints it as one line and exits with code 2."""


@dataclass
class Package:
    """One distribution of the resolved closure, as pip's `--report` gives it."""

    name: str  # PEP 503 normalised
    version: str
    filename: str  # the wheel pip chose
    requires_dist: list[str] = field(default_factory=list)
    required_by: set[str] = field(default_factory=set)


def normalize(name: str) -> str:
    """PEP 503 normalised project name: lowercase, runs of `-`, `_`, `.` become one `-`."""
    return re.sub(r"[-_.]+", "-", name.strip()).lower()


# ----------------------------------------------------------------------------- inputs


def base_dependencies(pyproject: Path) -> list[str]:
    """`[project].dependencies` of a pyproject.toml, as requirement strings."""
    try:
        with pyproject.open("rb") as f:
            data = tomllib.load(f)
    except FileNotFoundError:
        raise UserError(
            f"{pyproject} not found; run from the repository root or pass --pyproject PATH"
        ) from None
    except (OSError, tomllib.TOMLDecodeError) as e:
        raise UserError(f"cannot read {pyproject} ({e}); fix the file or pass --pyproject") from e
    deps = data.get("project", {}).get("dependencies")
    if not isinstance(deps, list) or not deps:
        raise UserError(f"{pyproject} has no [project].dependencies list; pass the right file")
    return [str(d) for d in deps]


_FREEZE_NAME = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)\s*(?:\[[^\]]*\])?\s*(.*)$")


def parse_freeze(text: str) -> dict[str, str | None]:
    """Packages in `pip freeze` / `pip list --format=freeze` output: {PEP 503 name: version}.

    Accepts `name==version` (and `===`), `name @ URL` and `-e ...#egg=name` (version unknown:
    None), the two-column `pip list` table, comments, blank lines, CRLF and a UTF-8 BOM; lines
    that are none of these (pip's warnings pasted in, options such as `-i URL`) are ignored.
    """
    have: dict[str, str | None] = {}
    for raw in text.lstrip("\ufeff").splitlines():
        line = raw.split(" #", 1)[0].strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("-"):
            egg = re.search(r"[#&]egg=([A-Za-z0-9][A-Za-z0-9._-]*)", line)
            if line.startswith(("-e", "--editable")) and egg:
                have[normalize(egg.group(1))] = None
            continue
        m = _FREEZE_NAME.match(line)
        if not m:
            continue
        name, rest = m.group(1), m.group(2).strip()
        if rest.startswith("==="):
            have[normalize(name)] = rest[3:].strip() or None
        elif rest.startswith("=="):
            have[normalize(name)] = rest[2:].strip() or None
        elif rest.startswith("@"):
            have[normalize(name)] = None
        elif re.fullmatch(r"\S+", rest) and re.match(r"\d", rest) and "=" not in rest:
            have[normalize(name)] = rest  # `pip list` table row: name  version
    return have


def read_have(path: Path) -> dict[str, str | None]:
    """parse_freeze() of a file; a missing, unreadable or empty file is a UserError."""
    hint = "make it on the target machine with: python3 -m pip list --format=freeze > FILE"
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError as e:
        raise UserError(f"cannot read --have file {path} ({e.strerror or e}); {hint}") from None
    have = parse_freeze(text)
    if not have:
        raise UserError(f"--have file {path} lists no packages (name==version lines); {hint}")
    return have


# ----------------------------------------------------------------------------- closure


def target_environment(python_version: str = PYTHON_VERSION) -> dict[str, str]:
    """PEP 508 marker values of the target: CPython `python_version` on Linux x86-64."""
    return {
        "implementation_name": "cpython",
        "implementation_version": f"{python_version}.0",
        "os_name": "posix",
        "platform_machine": "x86_64",
        "platform_python_implementation": "CPython",
        "platform_release": "",
        "platform_system": "Linux",
        "platform_version": "",
        "python_full_version": f"{python_version}.0",
        "python_version": python_version,
        "sys_platform": "linux",
    }


def _applies(marker: Marker | None, env: dict[str, str], extras: set[str]) -> bool:
    if marker is None:
        return True
    return any(marker.evaluate({**env, "extra": e}) for e in ({""} | extras))


def packages_from_report(report: dict) -> dict[str, Package]:
    """The distributions a pip `install --dry-run --report` JSON would install, by name."""
    packages: dict[str, Package] = {}
    for item in report.get("install", []):
        meta = item.get("metadata", {})
        url = item.get("download_info", {}).get("url", "")
        name = normalize(meta["name"])
        packages[name] = Package(
            name=name,
            version=str(meta["version"]),
            filename=unquote(Path(urlparse(url).path).name),
            requires_dist=list(meta.get("requires_dist") or []),
        )
    return packages


def closure(
    roots: list[str],
    packages: dict[str, Package],
    env: dict[str, str],
    image: Collection[str] = (),
) -> tuple[dict[str, Package], list[str]]:
    """Walk the requirements from `roots` through `packages` under the target's markers.

    pip evaluates environment markers for the interpreter it runs on, not for
    `--python-version`, so its report may hold packages the target does not need and lack
    ones it does. A package in `image` (PEP 503 names) is taken as installed together with its
    own dependencies, so the walk only follows what the extras asked of it (`etils[epath]`
    needs fsspec even where etils is installed). Returns (the packages reached, each with
    `required_by` filled in; the requirements reached that are not in `packages`, as strings
    to resolve again).
    """
    extras_of: dict[str, set[str]] = {}
    needed: dict[str, Package] = {}
    absent: dict[str, str] = {}
    queue: list[tuple[str, str]] = [(r, "pyproject") for r in roots]
    while queue:
        text, parent = queue.pop(0)
        req = Requirement(text)
        if not _applies(req.marker, env, set()):
            continue
        name = normalize(req.name)
        extras = {normalize(e) for e in req.extras}
        pkg = packages.get(name)
        if pkg is None:
            req.marker = None
            absent.setdefault(name, str(req))
            continue
        pkg.required_by.add(parent)
        if name in extras_of and extras <= extras_of[name]:
            continue
        extras_of[name] = extras_of.get(name, set()) | extras
        needed[name] = pkg
        for dep in pkg.requires_dist:
            try:
                dep_req = Requirement(dep)
            except InvalidRequirement:
                continue
            if not _applies(dep_req.marker, env, extras_of[name]):
                continue
            if name in image and _applies(dep_req.marker, env, set()):
                continue  # a base dependency of an installed package: installed with it
            dep_req.marker = None
            queue.append((str(dep_req), name))
    return needed, sorted(absent.values())


def missing_packages(
    needed: dict[str, Package], have: dict[str, str | None] | frozenset[str]
) -> tuple[list[Package], list[Package]]:
    """Split the closure into (to download: the image lacks it; on the image: skipped)."""
    have_names = {normalize(n) for n in have}
    fetch = [p for n, p in sorted(needed.items()) if n not in have_names]
    skip = [p for n, p in sorted(needed.items()) if n in have_names]
    return fetch, skip


def version_conflicts(
    fetch: list[Package], have: dict[str, str | None], env: dict[str, str]
) -> list[str]:
    """Requirements of the downloaded packages that the image's known versions break."""
    problems = []
    for pkg in fetch:
        for dep in pkg.requires_dist:
            try:
                req = Requirement(dep)
            except InvalidRequirement:
                continue
            if req.marker is not None and not _applies(req.marker, env, set()):
                continue
            image_version = have.get(normalize(req.name))
            if image_version is None or not req.specifier:
                continue
            try:
                ok = req.specifier.contains(Version(image_version), prereleases=True)
            except InvalidVersion:
                continue
            if not ok:
                problems.append(
                    f"{pkg.name} {pkg.version} requires {req.name}{req.specifier}, "
                    f"the image has {image_version}"
                )
    return problems


# ----------------------------------------------------------------------------- budget


def budget_error(sizes: dict[str, int], max_mib: float) -> str | None:
    """One line if the wheels' total exceeds `max_mib` MiB, else None."""
    total = sum(sizes.values())
    if total <= max_mib * MIB:
        return None
    biggest = max(sizes, key=sizes.__getitem__)
    return (
        f"the wheels total {total / MIB:.1f} MiB, over the {max_mib:g} MiB budget "
        f"(largest: {biggest}, {sizes[biggest] / MIB:.1f} MiB); find what pulls it in "
        f"(the table's 'required by') or raise --max-mib"
    )


def format_table(rows: list[tuple[str, int, str]]) -> str:
    """Rows of (wheel file, bytes, required by) as a text table with a total line."""
    width = max([len(r[0]) for r in rows] + [len("wheel")])
    lines = [f"{'wheel':<{width}}  {'MiB':>7}  required by", "-" * (width + 24)]
    for name, size, why in rows:
        lines.append(f"{name:<{width}}  {size / MIB:7.2f}  {why}")
    lines.append("-" * (width + 24))
    total = sum(r[1] for r in rows)
    lines.append(f"{f'total ({len(rows)} wheels)':<{width}}  {total / MIB:7.2f}")
    return "\n".join(lines)


def install_line(folder: str) -> str:
    """The command that installs the folder's wheels on the target machine."""
    return (
        "python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade "
        f"--target /tmp/site {folder}/*.whl && export PYTHONPATH=/tmp/site:$PYTHONPATH"
    )


# ----------------------------------------------------------------------------- pip


def pip_failure(output: str, what: str) -> str:
    """One line saying why a pip run failed and what to do, from pip's output."""
    if any(sign in output for sign in _NETWORK_SIGNS):
        return (
            f"pip could not reach the package index while {what}; run this on a machine "
            "with network to PyPI (or set PIP_INDEX_URL to a reachable mirror)"
        )
    errors = [ln.strip() for ln in output.splitlines() if ln.startswith("ERROR:")]
    last = errors[-1] if errors else (output.strip().splitlines() or ["no output"])[-1]
    if "ResolutionImpossible" in output or "conflict" in output.lower():
        return (
            f"pip found no consistent set of versions while {what} ({last}); "
            "fix the ranges in pyproject.toml"
        )
    return f"pip failed while {what} ({last}); run with --verbose to see pip's output"


def unavailable_requirement(output: str) -> tuple[str, bool] | None:
    """(requirement, no file at all) for pip's 'No matching distribution found for X'.

    The second item is True when pip saw no usable file of any version ('from versions:
    none'): for a package on the index, it has no wheel for the target.
    """
    if any(sign in output for sign in _NETWORK_SIGNS):
        return None
    m = re.search(r"No matching distribution found for (\S+)", output)
    if not m:
        return None
    req = m.group(1)
    none = re.search(
        rf"satisfies the requirement {re.escape(req)}\b.*\(from versions: none\)", output
    )
    return req, none is not None


def conflicting_pins(output: str) -> list[str]:
    """Names of the constraints pip blames in a ResolutionImpossible message."""
    found = re.findall(r"The user requested \(constraint\) ([A-Za-z0-9][A-Za-z0-9._-]*)", output)
    return sorted({normalize(n) for n in found})


class Pip:
    """Runs `python -m pip` for the target (cp312, manylinux x86-64, wheels only)."""

    def __init__(self, python_version: str, verbose: bool) -> None:
        self.python_version = python_version
        self.verbose = verbose
        self.find_links: list[Path] = []

    def target_args(self) -> list[str]:
        args = ["--only-binary=:all:", "--python-version", self.python_version]
        args += ["--implementation", "cp"]
        for platform in PLATFORMS:
            args += ["--platform", platform]
        for folder in self.find_links:
            args += ["--find-links", str(folder)]
        return args

    def run(self, args: list[str]) -> tuple[int, str]:
        cmd = [sys.executable, "-m", "pip", *args]
        if self.verbose:
            print("+", " ".join(cmd), file=sys.stderr)
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
        except OSError as e:
            raise UserError(f"cannot run pip ({e}); install pip for {sys.executable}") from None
        output = proc.stdout + proc.stderr
        if self.verbose:
            print(output, file=sys.stderr)
        return proc.returncode, output

    def resolve(self, reqs: list[str], constraints: list[str], tmp: Path) -> tuple[int, str, dict]:
        """`pip install --dry-run --report` for the target; (returncode, output, report)."""
        (tmp / "reqs.txt").write_text("\n".join(reqs) + "\n")
        (tmp / "constraints.txt").write_text("\n".join(constraints) + "\n")
        report = tmp / "report.json"
        report.unlink(missing_ok=True)
        args = ["install", "--dry-run", "--ignore-installed", "--report", str(report)]
        args += ["--target", str(tmp / "target"), *self.target_args()]
        args += ["-r", str(tmp / "reqs.txt"), "-c", str(tmp / "constraints.txt")]
        code, output = self.run(args)
        data = json.loads(report.read_text()) if code == 0 and report.exists() else {}
        return code, output, data

    def build_pure_wheel(self, requirement: str, folder: Path) -> Path:
        """Build a requirement that has only an sdist; the wheel must be pure Python."""
        folder.mkdir(parents=True, exist_ok=True)
        before = set(folder.glob("*.whl"))
        code, output = self.run(["wheel", "--no-deps", "-w", str(folder), requirement])
        if code != 0 and unavailable_requirement(output):
            raise UserError(
                f"the package index has no file of {requirement} at all (no wheel, no source); "
                "check the index settings (PIP_INDEX_URL, --no-index in pip.conf)"
            )
        if code != 0:
            raise UserError(pip_failure(output, f"building a wheel of {requirement}"))
        built = sorted(set(folder.glob("*.whl")) - before)
        if not built or not built[0].name.endswith("-none-any.whl"):
            got = built[0].name if built else "nothing"
            raise UserError(
                f"{requirement} has no cp{self.python_version.replace('.', '')} manylinux "
                f"x86-64 wheel and building it here gave {got}, not a pure-Python wheel; "
                f"build it on a Python {self.python_version} x86-64 machine and put it in --out"
            )
        return built[0]


def resolve_closure(
    pip: Pip,
    roots: list[str],
    have: dict[str, str | None],
    env: dict[str, str],
    tmp: Path,
    image: Collection[str] = (),
) -> dict[str, Package]:
    """The packages the target needs for `roots`, resolved by pip (retrying as needed).

    `image`: the installed packages whose own dependencies are taken as installed (closure()).
    """
    # Pin what the image has (when its versions are known) so that the packages fetched fit
    # the image's versions; pins pip cannot satisfy are dropped one by one, with a note.
    pins = {n: v for n, v in have.items() if v and re.fullmatch(r"[0-9A-Za-z.!+_-]+", v)}
    pins = {n: v.split("+", 1)[0] for n, v in pins.items()}
    extra: list[str] = []
    built: set[str | None] = set()
    for _attempt in range(12):
        constraints = [f"{n}=={v}" for n, v in sorted(pins.items())]
        code, output, report = pip.resolve(roots + extra, constraints, tmp)
        if code != 0:
            found = unavailable_requirement(output)
            wanted, no_file = found if found else (None, False)
            try:
                name = normalize(Requirement(wanted).name) if wanted else None
            except InvalidRequirement:
                name = None
            if name in pins:
                note(f"the image's {name}=={pins.pop(name)} is not on the index; not pinned")
                continue
            clashing = [n for n in conflicting_pins(output) if n in pins]
            for n in clashing:
                note(f"the image's {n}=={pins.pop(n)} conflicts with the closure; not pinned")
            if clashing:
                continue
            if "ResolutionImpossible" in output and pins:
                note("the image's versions do not resolve with pyproject's ranges; not pinned")
                pins = {}
                continue
            if wanted and no_file and name not in built:
                wheel = pip.build_pure_wheel(wanted, tmp / "built")
                built.add(name)
                note(f"{wanted} is published only as source; built {wheel.name}")
                if tmp / "built" not in pip.find_links:
                    pip.find_links.append(tmp / "built")
                continue
            raise UserError(pip_failure(output, "resolving the dependencies"))
        needed, absent = closure(roots + extra, packages_from_report(report), env, image)
        if not absent:
            return needed
        extra += [a for a in absent if a not in extra]
    raise UserError("pip's resolution did not settle after 12 tries; run with --verbose")


def note(message: str) -> None:
    print(f"{PROG}: {message}", file=sys.stderr)


def wheel_files(fetch: list[Package], out: Path) -> dict[str, Path]:
    """The wheel in `out` of each package of `fetch`, by name: the file pip's report named,
    else one of the same name and version."""
    files: dict[str, Path] = {}
    for pkg in fetch:
        path = out / pkg.filename
        if not path.exists():  # pip picked another file of the same version
            candidates = sorted(
                f
                for f in out.glob("*.whl")
                if normalize(f.name.split("-")[0]) == pkg.name
                and f.name.split("-")[1] == pkg.version.replace("-", "_")
            )
            if not candidates:
                raise UserError(f"pip reported success but no wheel of {pkg.name} is in {out}")
            path = candidates[0]
        files[pkg.name] = path
    return files


def prune_stale(out: Path, keep: Collection[Path]) -> list[str]:
    """Delete every wheel in `out` not in `keep` (earlier versions, packages no longer needed:
    the install line takes all of `out/*.whl`); returns the names deleted."""
    removed = []
    for stale in sorted(out.glob("*.whl")):
        if stale not in keep:
            stale.unlink()
            removed.append(stale.name)
    return removed


def download(pip: Pip, fetch: list[Package], out: Path) -> dict[str, Path]:
    """Download exactly `fetch` into `out`; drop every other wheel there. {name: file}."""
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise UserError(
            f"cannot create --out folder {out} ({e.strerror or e}); pick another"
        ) from None
    if fetch:
        args = ["download", "--no-deps", *pip.target_args(), "-d", str(out)]
        code, output = pip.run(args + [f"{p.name}=={p.version}" for p in fetch])
        if code != 0:
            raise UserError(pip_failure(output, "downloading the wheels"))
    files = wheel_files(fetch, out)
    for name in prune_stale(out, set(files.values())):
        note(f"removed {name} (not needed now)")
    return files


# ----------------------------------------------------------------------------- main


def main(argv: list[str] | None = None) -> int:
    """Command line entry point; returns the exit code."""
    parser = argparse.ArgumentParser(
        prog="tools/offline_wheels.py",
        description=__doc__.split("\n\n", 1)[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--pyproject", type=Path, default=REPO / "pyproject.toml")
    parser.add_argument(
        "--have",
        type=Path,
        help="`python3 -m pip list --format=freeze` of the target (default: a typical JAX "
        "CUDA image's packages)",
    )
    parser.add_argument(
        "--with-image-deps",
        action="store_true",
        help="also fetch what the image's own packages depend on, where the image lacks it "
        "(for an incomplete --have list; by default they count as installed with them)",
    )
    parser.add_argument("--out", type=Path, default=REPO / ".whl", help="default: .whl/")
    parser.add_argument("--max-mib", type=float, default=DEFAULT_MAX_MIB)
    parser.add_argument("--python-version", default=PYTHON_VERSION)
    parser.add_argument("-v", "--verbose", action="store_true", help="show pip's commands")
    args = parser.parse_args(argv)
    try:
        return run(args)
    except UserError as e:
        print(f"{PROG}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted", file=sys.stderr)
        return 130


def run(args: argparse.Namespace) -> int:
    """Resolve, download, report; UserError for problems the user can fix."""
    roots = base_dependencies(args.pyproject)
    try:
        for r in roots:
            Requirement(r)
    except InvalidRequirement as e:
        raise UserError(f"{args.pyproject}: bad requirement ({e})") from None
    if args.have is not None:
        have = read_have(args.have)
        source = f"{args.have} ({len(have)} packages)"
    else:
        have = dict.fromkeys(DEFAULT_IMAGE)
        source = "the built-in list of a typical JAX CUDA image (--have FILE for the exact one)"
    env = target_environment(args.python_version)
    pip = Pip(args.python_version, args.verbose)
    note(f"resolving {len(roots)} dependencies of {args.pyproject.name} for CPython "
         f"{args.python_version}, manylinux x86-64, against {source}")  # fmt: skip
    with tempfile.TemporaryDirectory(prefix="offline-wheels-") as tmp:
        image = set() if args.with_image_deps else set(have)
        needed = resolve_closure(pip, roots, have, env, Path(tmp), image)
        fetch, skip = missing_packages(needed, have)
        note(f"{len(needed)} packages needed; on the image already ({len(skip)}): "
             + ", ".join(p.name for p in skip))  # fmt: skip
        for problem in version_conflicts(fetch, have, env):
            note(f"warning: {problem}")
        files = download(pip, fetch, args.out)

    rows = [
        (files[p.name].name, files[p.name].stat().st_size, ", ".join(sorted(p.required_by)))
        for p in fetch
    ]
    out = args.out.resolve()
    shown = str(out.relative_to(REPO)) if out.is_relative_to(REPO) else str(args.out)
    print(f"\nwheels in {shown}/ (what the image lacks):")
    print(format_table(rows) if rows else "(none: the image has everything)")
    print("\non the target machine, from the repository root (with this folder copied along):")
    print(f"  {install_line(shown)}")
    error = budget_error({r[0]: r[1] for r in rows}, args.max_mib)
    if error:
        print(f"{PROG}: error: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
