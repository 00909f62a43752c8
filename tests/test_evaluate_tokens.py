"""``mien evaluate tokens`` on a tiny tokenizer and a small real subset: CK+ probes and the transfer measures on two
real frames."""

import json

import pytest

pytest.importorskip("torch")


def test_evaluate_tokens_cli(tiny_tokenizer_dir, shared_data, tmp_path, capsys):
    from mien.cli.main import main

    out, js = tmp_path / "report.md", tmp_path / "report.json"
    rc = main(["evaluate", "tokens", "--tokenizer", str(tiny_tokenizer_dir), "--data", str(shared_data),
               "--max-subjects", "5", "--folds", "2",
               "--source", str(shared_data / "samples" / "single_face.mp4"), "--end", "0.5", "--every", "4",
               "--max-frames", "2", "--source-subject", "0", "--target-subject", "1",
               "--target", str(shared_data / "samples" / "WolfgangLanger_Pexels.mp4"), "--target-end", "0.5",
               "-o", str(out), "--json", str(js)])
    assert rc == 0
    rep = json.loads(js.read_text())
    pr = rep["probes"]
    assert set(pr["au"]) == {"tokens", "pooled backbone", "mien AU features"}
    assert pr["dims"]["tokens"] == 32 and pr["dims"]["mien AU features"] == 1660
    found, total = pr["faces"]["au"]
    assert total >= 15 and found >= total - 1
    for rep_name, a in pr["au"].items():
        for v in a["per_au"].values():
            assert v["auc"] != v["auc"] or 0 <= v["auc"] <= 1
        assert 0 <= pr["emotion"][rep_name]["accuracy"] <= 1
    tr = rep["transfer"]
    assert tr["source_frames"] == 2
    rows = tr["rows"]
    # a frame compared with itself agrees perfectly: the measures are deterministic and like for like
    assert rows["copy source (baseline)"]["emotion_agreement"] == 1.0
    assert rows["copy source (baseline)"]["au_agreement"] == 1.0
    assert rows["copy source (baseline)"]["au_abs_diff"] == 0.0
    n_expr = rows["copy source (baseline)"]["pairs_expressive"]
    assert 0 <= n_expr <= 2 and (n_expr == 0 or rows["copy source (baseline)"]["emotion_agreement_expressive"] == 1.0)
    for name in ("identity swap", "copy source (baseline)", "target mean frame (baseline)", "target frames (reference)"):
        assert -1 <= rows[name]["csim_target"] <= 1
    assert rows["target frames (reference)"]["csim_target"] > 0.9  # a person's frames vs their mean descriptor
    text = out.read_text()
    assert "Linear probes" in text and "identity swap" in text


def test_evaluate_tokens_bad_input(tiny_tokenizer_dir, tmp_path, capsys):
    from mien.cli.main import main

    assert main(["evaluate", "tokens", "--tokenizer", str(tmp_path / "nope")]) == 2
    assert "no such tokenizer folder" in capsys.readouterr().err
    assert main(["evaluate", "tokens", "--tokenizer", str(tiny_tokenizer_dir), "--no-probes"]) == 2


def test_face_measures_expressive_agreement_ignores_neutral_sources():
    """A neutral rendering agrees with every neutral source: the expressive column counts only the sources whose
    emotion is not neutral."""
    import numpy as np

    from mien.models.faceapi.nets import EXPRESSION_LABELS
    from mien.pipelines.token_eval import NEUTRAL, face_measures

    assert EXPRESSION_LABELS[NEUTRAL] == "neutral"
    n = 4
    src = {"emotion": np.array([NEUTRAL, NEUTRAL, 1, 6]), "au": np.zeros((n, 2)), "face": np.ones(n, bool)}
    flat = {"emotion": np.full(n, NEUTRAL), "au": np.zeros((n, 2)), "face": np.ones(n, bool)}
    r = face_measures(src, flat, np.full(2, 0.5))
    assert r["emotion_agreement"] == 0.5 and r["emotion_agreement_expressive"] == 0.0 and r["pairs_expressive"] == 2
    follow = {**flat, "emotion": np.array([NEUTRAL, 3, 1, 6])}
    r = face_measures(src, follow, np.full(2, 0.5))
    assert r["emotion_agreement"] == 0.75 and r["emotion_agreement_expressive"] == 1.0
