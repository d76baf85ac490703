"""A checkpoint written by an earlier version of the loop must keep restoring (orbax#648,
flax#3977): if this fails, the checkpoint format changed and old runs would be stranded.

Regenerate only for a deliberate, documented format change:
    tests/common/testdata/reference_run (tiny task, max_steps=2) + reference_params.npz
"""

import pathlib

import ml_collections
import numpy as np

from common import checkpoint
from common.config import base_config, fill_missing
from tests.common.conftest import run

TESTDATA = pathlib.Path(__file__).parent / "testdata"


def test_reference_checkpoint_restores_its_params():
    loaded = checkpoint.load_run(str(TESTDATA / "reference_run"))
    assert loaded.step == 2
    assert loaded.config.task == "tests.common.tiny_task:TinyTask"
    expected = np.load(TESTDATA / "reference_params.npz", allow_pickle=False)
    got = {f"{a}/{b}": np.asarray(v) for a, d in loaded.params.items() for b, v in d.items()}
    assert sorted(got) == sorted(expected.files)
    for key in expected.files:
        np.testing.assert_array_equal(got[key], expected[key])


def test_reference_checkpoint_resumes_into_todays_train_state(tmp_path):
    result = run(tmp_path, resume_from=str(TESTDATA / "reference_run"), max_steps=4)
    assert result.status == "completed" and result.step == 4


def test_an_old_run_gets_keys_added_after_it_from_the_family_defaults():
    """`load_run(defaults=get_config)`: an option added after a run was saved takes today's
    default; every value the run saved wins over today's defaults."""
    seen = {}

    def defaults(profile):
        seen["profile"] = profile
        c = base_config()
        c.task = "ignored: the run's value wins"
        c.model = ml_collections.ConfigDict({"new_option": True})
        c.new_top = 3
        return c

    loaded = checkpoint.load_run(str(TESTDATA / "reference_run"), defaults=defaults)
    assert loaded.config.task == "tests.common.tiny_task:TinyTask"
    assert loaded.config.new_top == 3 and loaded.config.model.new_option is True
    assert "profile" in seen


def test_fill_missing_names_each_filled_key_and_keeps_saved_values():
    saved = ml_collections.ConfigDict({"a": 1, "sub": {"x": 1}, "leaf": {"k": 0}})
    defaults = ml_collections.ConfigDict(
        {"a": 2, "b": 5, "sub": {"x": 9, "y": 7, "deep": {"z": 1}}, "leaf": {"k": 4}}
    )
    merged, filled = fill_missing(saved, defaults)
    assert merged.to_dict() == {
        "a": 1,
        "b": 5,
        "sub": {"x": 1, "y": 7, "deep": {"z": 1}},
        "leaf": {"k": 0},
    }
    assert sorted(filled) == ["b", "sub.deep", "sub.y"]
