"""A checkpoint written by an earlier version of the loop must keep restoring (orbax#648,
flax#3977): if this fails, the checkpoint format changed and old runs would be stranded.

Regenerate only for a deliberate, documented format change:
    tests/common/testdata/reference_run (tiny task, max_steps=2) + reference_params.npz
"""

import pathlib

import numpy as np

from common import checkpoint
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
