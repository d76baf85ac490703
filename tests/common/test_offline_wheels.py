"""tools/offline_wheels.py: the pure logic, on real files in tmp_path; nothing downloads."""

import json

import pytest

from tools import offline_wheels as ow

MIB = 1 << 20


# ----------------------------------------------------------------------------- freeze files


def test_normalize_follows_pep_503():
    assert ow.normalize("PyYAML") == "pyyaml"
    assert ow.normalize("typing_extensions") == "typing-extensions"
    assert ow.normalize("ruamel.yaml") == "ruamel-yaml"
    assert ow.normalize("Foo__Bar-.baz") == "foo-bar-baz"
    assert ow.normalize(" absl_py ") == "absl-py"


def test_freeze_file_with_odd_names_and_lines(tmp_path):
    text = (
        "\ufeff# pip list --format=freeze on the GPU image\r\n"
        "PyYAML==6.0.3\r\n"
        "typing_extensions==4.15.0\r\n"
        "ruamel.yaml==0.18.6\n"
        "Jinja2===3.1.4\n"
        "  absl_py == 2.3.1  \n"
        "torch==2.9.0+cu128\n"
        "jax-cuda12-plugin==0.11.2\n"
        "ML_Dtypes==0.5.4  # a comment\n"
        "mypkg @ file:///build/mypkg\n"
        "-e git+https://example.com/x/y.git@abc123#egg=My_Editable\n"
        "--index-url https://example.com/simple\n"
        "WARNING: Ignoring invalid distribution ~orch (/usr/lib/python3/dist-packages)\n"
        "\n"
    )
    path = tmp_path / "image-freeze.txt"
    path.write_text(text, encoding="utf-8", newline="")
    have = ow.read_have(path)
    assert have == {
        "pyyaml": "6.0.3",
        "typing-extensions": "4.15.0",
        "ruamel-yaml": "0.18.6",
        "jinja2": "3.1.4",
        "absl-py": "2.3.1",
        "torch": "2.9.0+cu128",
        "jax-cuda12-plugin": "0.11.2",
        "ml-dtypes": "0.5.4",
        "mypkg": None,
        "my-editable": None,
    }


def test_pip_list_table_is_accepted_too(tmp_path):
    path = tmp_path / "list.txt"
    path.write_text("Package    Version\n---------- -------\nFlax       0.12.8\nopt_einsum 3.4.0\n")
    assert ow.read_have(path) == {"flax": "0.12.8", "opt-einsum": "3.4.0"}


def test_unreadable_or_empty_have_file_is_a_user_error(tmp_path):
    with pytest.raises(ow.UserError, match=r"cannot read --have file .*pip list --format=freeze"):
        ow.read_have(tmp_path / "missing.txt")
    with pytest.raises(ow.UserError, match="cannot read --have file"):
        ow.read_have(tmp_path)  # a folder
    empty = tmp_path / "empty.txt"
    empty.write_text("# nothing here\n\nWARNING: pip is old\n")
    with pytest.raises(ow.UserError, match="lists no packages"):
        ow.read_have(empty)


# ----------------------------------------------------------------------------- pyproject


def test_base_dependencies_from_pyproject(tmp_path):
    path = tmp_path / "pyproject.toml"
    path.write_text(
        '[project]\nname = "x"\ndependencies = ["jax>=0.10,<0.12", "clu==0.0.12"]\n'
        '[project.optional-dependencies]\ntf = ["tensorflow-cpu"]\n'
    )
    assert ow.base_dependencies(path) == ["jax>=0.10,<0.12", "clu==0.0.12"]
    with pytest.raises(ow.UserError, match="not found"):
        ow.base_dependencies(tmp_path / "nope.toml")
    path.write_text('[project]\nname = "x"\n')
    with pytest.raises(ow.UserError, match=r"no \[project\]\.dependencies"):
        ow.base_dependencies(path)


def test_the_repository_pyproject_parses():
    deps = ow.base_dependencies(ow.REPO / "pyproject.toml")
    assert any(d.replace(" ", "").startswith("jax>=") for d in deps)


# ----------------------------------------------------------------------------- closure


def _item(name, version, requires=(), filename=None):
    filename = filename or f"{name.replace('-', '_')}-{version}-py3-none-any.whl"
    return {
        "download_info": {"url": f"https://files.example/packages/ab/cd/{filename}"},
        "is_direct": False,
        "requested": False,
        "metadata": {"name": name, "version": version, "requires_dist": list(requires)},
    }


@pytest.fixture
def report(tmp_path):
    """A small pip --report, written as pip writes it (pip ran on Python 3.11)."""
    data = {
        "version": "1",
        "pip_version": "26.3",
        "install": [
            _item("jax", "0.11.2", ["numpy>=2", "ml_dtypes>=0.5"]),
            _item("numpy", "2.3.4"),
            _item("ml-dtypes", "0.5.4", ["numpy"]),
            _item(
                "clu",
                "0.0.12",
                ["jax", "ml-collections", "etils[epath]", "pytest; extra == 'test'"],
            ),
            _item("ml_collections", "1.1.0", ["absl-py", "PyYAML"]),
            _item("absl-py", "2.3.1"),
            _item("PyYAML", "6.0.3", filename="PyYAML-6.0.3-cp312-cp312-manylinux_2_17_x86_64.whl"),
            _item(
                "etils",
                "1.13.0",
                [
                    "typing_extensions",
                    "humanize",  # a base dependency: installed with etils on the image
                    "fsspec; extra == 'epath'",
                    "zipp; extra == 'epath'",
                    "einops; extra == 'enp'",
                ],
            ),
            _item("typing-extensions", "4.15.0"),
            _item("humanize", "4.17.0"),
            _item("fsspec", "2026.9.0"),
            _item("zipp", "4.1.2"),
            _item(
                "tensorflow-datasets",
                "4.9.10",
                [
                    "promise",
                    "toml",
                    "importlib_resources; python_version < '3.12'",  # 3.11 only: not wanted
                    "tomli-w; python_version >= '3.12'",  # 3.12 only: pip on 3.11 left it out
                    "array_record>=0.5; platform_system == 'Linux'",
                    "pywin32; sys_platform == 'win32'",
                ],
            ),
            _item("promise", "2.3", ["six"]),
            _item("six", "1.17.0"),
            _item("toml", "0.10.2", filename="toml-0.10.2-py2.py3-none-any.whl"),
            _item("importlib-resources", "6.5.2"),
            _item("array-record", "0.8.6", ["absl-py", "etils[epath]"]),
        ],
        "environment": {"python_version": "3.11", "sys_platform": "linux"},
    }
    path = tmp_path / "report.json"
    path.write_text(json.dumps(data, indent=2))
    return ow.packages_from_report(json.loads(path.read_text()))


ROOTS = ["jax>=0.10.2,<0.12", "clu==0.0.12", "tensorflow-datasets>=4.9.10,<4.10"]
IMAGE = {
    "jax": "0.11.2",
    "numpy": "2.3.4",
    "ml-dtypes": None,
    "absl-py": "2.3.1",
    "pyyaml": "6.0.3",
    "etils": "1.13.0",
    "typing-extensions": "4.15.0",
    "six": "1.17.0",
}


def test_report_is_read_with_normalised_names_and_wheel_names(report):
    assert report["pyyaml"].version == "6.0.3"
    assert report["pyyaml"].filename == "PyYAML-6.0.3-cp312-cp312-manylinux_2_17_x86_64.whl"
    assert report["ml-collections"].requires_dist == ["absl-py", "PyYAML"]


def test_closure_minus_image_is_exactly_what_is_missing(report):
    env = ow.target_environment("3.12")
    needed, absent = ow.closure(ROOTS, report, env, image=set(IMAGE))
    fetch, skip = ow.missing_packages(needed, IMAGE)
    assert [p.name for p in fetch] == [
        "array-record",
        "clu",
        "fsspec",
        "ml-collections",
        "promise",
        "tensorflow-datasets",
        "toml",
        "zipp",
    ]
    # jax's own dependencies count as installed with it; etils' base dependency too, but not
    # what the [epath] extra asks for; the 3.11-only backport and the Windows one are dropped.
    assert {p.name for p in skip} == {"jax", "absl-py", "pyyaml", "etils", "six"}
    assert "humanize" not in needed and "importlib-resources" not in needed
    assert "einops" not in needed  # [enp] was never asked for
    # pip (on 3.11) left out a dependency that only 3.12 has: it is resolved again.
    assert absent == ["tomli-w"]
    assert needed["fsspec"].required_by == {"etils"}
    assert needed["ml-collections"].required_by == {"clu"}


def test_closure_on_311_keeps_the_backport(report):
    needed, absent = ow.closure(ROOTS, report, ow.target_environment("3.11"), image=set(IMAGE))
    assert "importlib-resources" in needed
    assert absent == []


def test_with_image_deps_follows_installed_packages_too(report):
    needed, _ = ow.closure(ROOTS, report, ow.target_environment("3.12"), image=())
    fetch, _ = ow.missing_packages(needed, IMAGE)
    assert "humanize" in {p.name for p in fetch}  # etils' base dependency, absent from IMAGE


def test_names_on_the_image_match_whatever_their_spelling(report):
    needed, _ = ow.closure(ROOTS, report, ow.target_environment("3.12"))
    fetch, _ = ow.missing_packages(needed, {"PyYAML": "6.0.3", "ML_Collections": "1.1.0"})
    names = {p.name for p in fetch}
    assert "pyyaml" not in names and "ml-collections" not in names
    assert "jax" in names  # not on this (empty) image


def test_the_default_image_never_downloads_jax_or_flax():
    for name in ("jax", "jaxlib", "flax", "optax", "orbax-checkpoint", "numpy", "tensorboard"):
        assert name in ow.DEFAULT_IMAGE
    assert all(ow.normalize(n) == n for n in ow.DEFAULT_IMAGE)
    assert "clu" not in ow.DEFAULT_IMAGE and "tensorflow-datasets" not in ow.DEFAULT_IMAGE


def test_version_conflicts_with_the_image(report):
    report["tensorflow-datasets"].requires_dist.append("protobuf>=5")
    problems = ow.version_conflicts(
        [report["tensorflow-datasets"], report["clu"]],
        {"protobuf": "4.25.3", "jax": "0.11.2", "odd": "not-a-version"},
        ow.target_environment("3.12"),
    )
    assert problems == ["tensorflow-datasets 4.9.10 requires protobuf>=5, the image has 4.25.3"]


# ----------------------------------------------------------------------------- folder, budget


def test_wheel_files_and_pruning_keep_one_version_per_package(tmp_path, report):
    out = tmp_path / ".whl"
    out.mkdir()
    for name in (
        "clu-0.0.11-py3-none-any.whl",  # an earlier run's version
        "clu-0.0.12-py3-none-any.whl",
        "toml-0.10.2-py2.py3-none-any.whl",
        "humanize-4.17.0-py3-none-any.whl",  # no longer needed
        "promise-2.3-py3-none-any.whl",
    ):
        (out / name).write_bytes(b"x")
    (out / "README.txt").write_text("not a wheel: left alone")
    report["promise"].filename = "promise-2.3.tar.gz"  # pip chose another file of 2.3
    fetch = [report["clu"], report["toml"], report["promise"]]
    files = ow.wheel_files(fetch, out)
    assert {n: f.name for n, f in files.items()} == {
        "clu": "clu-0.0.12-py3-none-any.whl",
        "toml": "toml-0.10.2-py2.py3-none-any.whl",
        "promise": "promise-2.3-py3-none-any.whl",
    }
    removed = ow.prune_stale(out, set(files.values()))
    assert removed == ["clu-0.0.11-py3-none-any.whl", "humanize-4.17.0-py3-none-any.whl"]
    assert sorted(p.name for p in out.iterdir()) == [
        "README.txt",
        "clu-0.0.12-py3-none-any.whl",
        "promise-2.3-py3-none-any.whl",
        "toml-0.10.2-py2.py3-none-any.whl",
    ]
    with pytest.raises(ow.UserError, match="no wheel of zipp"):
        ow.wheel_files([report["zipp"]], out)


def test_budget_check(tmp_path):
    sizes = {}
    for name, size in (("a-1-py3-none-any.whl", 30 * MIB), ("b-1-py3-none-any.whl", 18 * MIB)):
        (tmp_path / name).write_bytes(b"\0" * size)
        sizes[name] = (tmp_path / name).stat().st_size
    assert ow.budget_error(sizes, 48) is None  # exactly at the budget is fine
    error = ow.budget_error(sizes, 47.5)
    assert error is not None and "\n" not in error
    assert "48.0 MiB, over the 47.5 MiB budget" in error and "a-1-py3-none-any.whl" in error
    assert ow.budget_error({}, 0) is None


def test_table_has_every_wheel_and_the_total():
    table = ow.format_table([("a-1-py3-none-any.whl", 3 * MIB, "pyproject"), ("b.whl", MIB, "a")])
    lines = table.splitlines()
    assert "a-1-py3-none-any.whl" in lines[2] and "3.00" in lines[2] and "pyproject" in lines[2]
    assert lines[-1].startswith("total (2 wheels)") and lines[-1].endswith("4.00")


def test_install_line_is_the_documented_one():
    assert ow.install_line(".whl") == (
        "python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade "
        "--target /tmp/site .whl/*.whl && export PYTHONPATH=/tmp/site:$PYTHONPATH"
    )
    readme = (ow.REPO / "README.md").read_text()
    assert ow.install_line(".whl") in readme


# ----------------------------------------------------------------------------- pip's words


def test_pip_output_is_read():
    sdist_only = (
        "ERROR: Could not find a version that satisfies the requirement promise "
        "(from tensorflow-datasets) (from versions: none)\n"
        "ERROR: No matching distribution found for promise\n"
    )
    assert ow.unavailable_requirement(sdist_only) == ("promise", True)
    too_new = (
        "ERROR: Could not find a version that satisfies the requirement jax==0.4.26.dev1 "
        "(from versions: 0.4.25, 0.4.26)\nERROR: No matching distribution found for "
        "jax==0.4.26.dev1\n"
    )
    assert ow.unavailable_requirement(too_new) == ("jax==0.4.26.dev1", False)
    offline = (
        "WARNING: Retrying (Retry(total=4)) after connection broken by "
        "'NewConnectionError(... Failed to establish a new connection: [Errno -3] Temporary "
        "failure in name resolution')': /simple/jax/\n"
        "ERROR: No matching distribution found for jax<0.12,>=0.10.2\n"
    )
    assert ow.unavailable_requirement(offline) is None
    message = ow.pip_failure(offline, "resolving the dependencies")
    assert "could not reach the package index" in message and "\n" not in message
    conflict = (
        "The conflict is caused by:\n    orbax-checkpoint 0.12.8 depends on tensorstore>=0.1.84\n"
        "    The user requested (constraint) tensorstore==0.1.78\n"
        "ERROR: ResolutionImpossible: for help visit https://pip.pypa.io\n"
    )
    assert ow.conflicting_pins(conflict) == ["tensorstore"]
    assert "no consistent set of versions" in ow.pip_failure(conflict, "resolving")


def test_user_errors_end_in_one_line_and_exit_code_2(tmp_path, capsys):
    assert ow.main(["--pyproject", str(tmp_path / "pyproject.toml")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err and "--pyproject" in err
    assert ow.main(["--have", str(tmp_path / "freeze.txt")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "pip list --format=freeze" in err
