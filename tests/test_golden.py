"""Outputs of `mien analyze` and `mien prepare` on the shared samples stay identical across refactors.

The reference fingerprints in ``tests/golden/outputs.json`` were made by ``tests/golden/make_golden.py`` run on
the code of commit ad7d78b (before the architecture change of issue 8); prepare's inputs are linked under one
fixed path, because its keys and random windows are seeded by the source path. Gaze is compared separately: its documented shift
(the head frame now comes from the shared Umeyama estimator; closed eyes give NaN) is bounded, not hashed.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent / "golden"
sys.path.insert(0, str(HERE))
import make_golden  # noqa: E402

REFERENCE = json.loads((HERE / "outputs.json").read_text())


@pytest.fixture(scope="module")
def analyze_now(shared_data):
    pytest.importorskip("torch")
    make_golden.SHARED = shared_data
    return make_golden.analyze_fingerprints()


@pytest.mark.parametrize("case", sorted(REFERENCE["analyze"]))
def test_analyze_outputs_unchanged(analyze_now, case):
    ref, now = REFERENCE["analyze"][case], analyze_now[case]
    assert now["rows"] == ref["rows"]
    changed = sorted(k for k, h in ref["hashes"].items() if now["hashes"].get(k) != h)
    assert not changed, f"{case}: columns changed: {changed}"
    for k, v in ref["gaze_mean_abs"].items():  # gaze may shift a little (documented), not jump
        assert now["gaze_mean_abs"][k] == pytest.approx(v, abs=1.5), k


def test_prepare_outputs_unchanged(shared_data):
    pytest.importorskip("webdataset")
    make_golden.SHARED = shared_data
    now, ref = make_golden.prepare_fingerprints(), REFERENCE["prepare"]
    assert sorted(now) == sorted(ref), "shard keys changed"
    for key in ref:
        changed = sorted(m for m, h in ref[key].items() if now[key].get(m) != h)
        assert not changed, f"{key}: members changed: {changed}"
