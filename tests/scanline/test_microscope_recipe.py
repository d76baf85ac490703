"""The README's three commands for a group's own microscope, run as written (read from
scanline/README.md, "Your own microscope") on Nanonis files made in the test: pretrain on the
generator, fine-tune with a named session held out, triage a day's scans. Only sizes are
shrunk (appended flags, the same model shrink for both training commands so init_from fits)."""

import csv
import json
import os
import re
import shlex
import subprocess
import sys

import numpy as np
from PIL import Image

from tests.common.conftest import REPO, subprocess_env
from tests.scanline.stm_files import write_sxm

SIZE = 32
CLASSES = ("blunt", "double", "good")
# The same small model for pretraining and fine-tuning; a few steps each.
TINY = [
    f"--config.data.line_length={SIZE}",
    "--config.model.cnn_channels=(4,8,8)",
    "--config.model.lstm_size=16",
    "--config.max_steps=2",
    "--config.batch_size=4",
    "--config.eval_batch_size=8",
    "--config.log_every_steps=1",
    "--config.compilation_cache_dir=",
]


def readme_commands() -> list[list[str]]:
    """The bash block of the README section that runs the three commands."""
    with open(os.path.join(REPO, "scanline", "README.md")) as f:
        text = f.read()
    section = text[text.index("## Your own microscope") :]
    block = re.search(r"Three commands.*?```bash\n(.*?)```", section, re.S).group(1)
    return [shlex.split(line) for line in block.replace("\\\n", " ").splitlines() if line]


def _session_folder(folder, n_sessions: int, per_session: int, rng) -> list[dict]:
    """Nanonis scans of every class in every session; labels by name."""
    rows = []
    for s in range(n_sessions):
        day = f"2026-11-{28 + s}"
        os.makedirs(folder / day, exist_ok=True)
        for i in range(per_session):
            label = CLASSES[i % 3]
            z = rng.normal(size=(SIZE + 8 * (i % 2), SIZE)) * 1e-11 * (1 + i % 3)
            name = f"{day}/Z{i:03d}.sxm"
            write_sxm(folder / name, z, z[:, ::-1])
            rows.append({"file": name, "label": label, "session": day})
    with open(folder / "labels.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, ["file", "label", "session"])
        writer.writeheader()
        writer.writerows(rows)
    return rows


def test_the_readme_commands_pretrain_finetune_with_a_session_held_out_and_triage(tmp_path):
    commands = readme_commands()
    assert [c[:3] for c in commands] == [
        ["python", "-m", "scanline.main"],
        ["python", "-m", "scanline.main"],
        ["python", "-m", "scanline.predict"],
    ]
    rng = np.random.default_rng(0)
    scans, today = tmp_path / "scans", tmp_path / "today"
    _session_folder(scans, 3, 6, rng)
    today.mkdir()
    for i in range(5):
        write_sxm(
            today / f"Z{i:03d}.sxm", rng.normal(size=(SIZE, SIZE)) * 1e-11, np.zeros((32, 32))
        )
    (today / "broken.sxm").write_bytes(b":NANONIS_VERSION:\n2\n")
    Image.fromarray(rng.integers(0, 65535, (SIZE, SIZE)).astype(np.uint16)).save(today / "a.png")

    def local(arg: str) -> str:
        arg = arg.replace("/data/scans", str(scans)).replace("/data/today", str(today))
        arg = re.sub(r"(?<==)runs/", f"{tmp_path}/runs/", arg)
        arg = re.sub(r"^runs/", f"{tmp_path}/runs/", arg)
        return str(tmp_path / arg) if arg == "today.csv" else arg

    env = subprocess_env()
    pretrain, finetune, triage = ([local(a) for a in c] for c in commands)
    synthetic = ["--config.synth.n=32", "--config.synth.test_n=8", "--config.synth.workers=1"]
    extra = {
        0: [*TINY, *synthetic, f"--config.data_dir={tmp_path / 'cache'}"],
        1: [*TINY, "--config.data.split=(0.5,0.5,0.0)"],
    }
    for k, command in enumerate((pretrain, finetune)):
        done = subprocess.run(
            [sys.executable, *command[1:], *extra[k]],
            cwd=REPO,
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert done.returncode == 0, done.stderr[-3000:]
        assert "run completed" in done.stdout
    run = tmp_path / "runs" / "my_tip"
    config = json.loads((run / "config.json").read_text())
    assert config["init_from"] == str(tmp_path / "runs" / "synthetic")
    data = json.loads((run / "data.json").read_text())
    assert data["test"]["groups"] == ["2026-11-30"]  # the named session, whole
    assert data["test"]["class_counts"] == {c: 2 for c in CLASSES}
    assert not set(data["train"]["groups"]) & set(data["val"]["groups"])
    final = json.loads((run / "final_metrics.json").read_text())
    assert final["final/test/num_examples"] == 6

    from scanline import predict

    out = tmp_path / "today.csv"
    assert predict.main(triage[3:]) == 0 and out.exists()
    with open(out, newline="") as f:
        rows = list(csv.DictReader(f))
    assert sorted(os.path.basename(r["file"]) for r in rows) == [
        "Z000.sxm",
        "Z001.sxm",
        "Z002.sxm",
        "Z003.sxm",
        "Z004.sxm",
        "a.png",
    ]  # broken.sxm listed as skipped, not fatal
    probs = np.array([[float(r[f"p_{c}"]) for c in CLASSES] for r in rows])
    np.testing.assert_allclose(probs.sum(1), 1.0, atol=1e-3)
    assert {r["predicted"] for r in rows} <= set(CLASSES)
    assert "known_after_lines" not in rows[0]  # one read-out: the whole-scan window
    assert Image.open(tmp_path / "today_sheet.png").size[0] > 0


def test_init_from_takes_every_layer_and_the_head_only_for_the_same_classes():
    import types

    import configs.scanline as cfgmod
    from scanline.task import ScanlineTask

    task = ScanlineTask(cfgmod.get_config("smoke"))
    task._splits = types.SimpleNamespace(class_names=("blunt", "double", "good"))

    def params(fill, k):
        return {"cnn": {"w": np.full((2, 2), fill)}, "head": {"kernel": np.full((4, k), fill)}}

    fresh = params(0.0, 3)
    same = task.init_from_params(params(1.0, 3), fresh, {"class_names": list(CLASSES)})
    assert same["head"]["kernel"].max() == 1.0 and same["cnn"]["w"].max() == 1.0
    for loaded, state in (
        (params(1.0, 3), {"class_names": ["a", "b", "c"]}),  # same number, other classes
        (params(1.0, 4), {"class_names": ["w", "x", "y", "z"]}),  # the generator's four
        (params(1.0, 4), {}),  # a run that saved no names
    ):
        out = task.init_from_params(loaded, fresh, state)
        assert out["head"]["kernel"].shape == (4, 3) and out["head"]["kernel"].max() == 0.0
        assert out["cnn"]["w"].max() == 1.0
