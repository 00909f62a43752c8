"""Dyadic data for listener-reaction generation: the official REACT layout reader, dyadic shards,
DyadicDataset, ``mien prepare --mode dyadic`` and the reaction renderer."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest

from mien.errors import InputError
from mien.metrics.react import DTW_SLICES, REACT_ATTRIBUTES

SPLIT_ROWS = [("NoXI/001_Paris/Expert_video/1", "NoXI/001_Paris/Novice_video/1"),
              ("RECOLA/group-1/P25/2", "RECOLA/group-1/P26/2"),
              ("UDIVA/talk/FC1_T/3", "UDIVA/talk/FC2_T/3")]


def _write_react_tree(root: Path, split: str = "val", frames: int = 751, seed: int = 0) -> np.ndarray:
    """A tiny tree in the official layout: {split}.csv, Emotion CSVs, Audio wavs, Video_files PNG folders,
    3D_FV_files and neighbour_emotion_{split}.npy. Returns the (2M, 2M) matrix written."""
    import soundfile as sf

    rng = np.random.default_rng(seed)
    with open(root / f"{split}.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["", "speaker_path", "listener_path"])
        for i, (a, b) in enumerate(SPLIT_ROWS):
            w.writerow([i, a, b])
    for n, path in enumerate(p for row in SPLIT_ROWS for p in row):
        emo = root / split / "Emotion" / f"{path}.csv"
        emo.parent.mkdir(parents=True, exist_ok=True)
        vals = np.concatenate([rng.integers(0, 2, (frames, 15)), rng.uniform(-1, 1, (frames, 2)),
                               rng.dirichlet(np.ones(8), frames)], 1)
        vals[:, 0] = n  # marks the clip: column AU01 = clip number
        with open(emo, "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(REACT_ATTRIBUTES)
            w.writerows(vals.round(4).tolist())
        wav = root / split / "Audio_files" / f"{path}.wav"
        wav.parent.mkdir(parents=True, exist_ok=True)
        sf.write(wav, rng.normal(0, 0.1, 16000).astype(np.float32), 16000)
        (root / split / "Video_files" / path).mkdir(parents=True, exist_ok=True)
        fv = root / split / "3D_FV_files" / f"{path}.npy"
        fv.parent.mkdir(parents=True, exist_ok=True)
        np.save(fv, np.zeros((frames, 1, 58), np.float32))
    m = len(SPLIT_ROWS)
    a = np.eye(2 * m, dtype=bool)
    a[0, m + 1] = a[m + 1, 0] = True
    np.save(root / f"neighbour_emotion_{split}.npy", a)
    return a


@pytest.fixture
def react_tree(tmp_path):
    root = tmp_path / "data"
    root.mkdir()
    return root, _write_react_tree(root, frames=60)


def test_layout_mirrors_roles_and_reads_matrix(react_tree):
    from mien.data.react import read_emotion_csv, read_split

    root, matrix = react_tree
    split = read_split(root, "val")
    m = len(SPLIT_ROWS)
    assert len(split) == 2 * m and [d.a.path for d in split.dyads] == [r[0] for r in SPLIT_ROWS]
    for i in range(m):
        sp, li = split.item(i)
        sp2, li2 = split.item(i + m)
        assert (sp.path, li.path) == SPLIT_ROWS[i] and (sp2.path, li2.path) == SPLIT_ROWS[i][::-1]
    x = read_emotion_csv(split.item(m + 1)[0].emotion)  # item m+1: dyad 1 with its col-2 person speaking
    assert x.shape == (60, 25) and x.dtype == np.float32 and (x[:, 0] == 3).all()
    np.testing.assert_array_equal(split.appropriateness(), matrix)
    assert DTW_SLICES[0][:2] == (0, 15) and REACT_ATTRIBUTES[15:17] == ("valence", "arousal")


def test_layout_bad_inputs(react_tree, tmp_path):
    from mien.data.react import read_appropriateness, read_emotion_csv, read_split

    root, _ = react_tree
    bad = tmp_path / "bad.csv"
    bad.write_text("h\n" + "\n".join(",".join(["0"] * 24) for _ in range(3)))
    with pytest.raises(InputError, match=r"bad.csv: rows have \[24\] columns, expected 25"):
        read_emotion_csv(bad)
    np.save(tmp_path / "m.npy", np.eye(5, dtype=bool))
    with pytest.raises(InputError, match=r"m.npy: appropriateness matrix is 5×5, expected 6×6"):
        read_appropriateness(tmp_path / "m.npy", 6)
    (root / "val" / "Emotion" / f"{SPLIT_ROWS[2][1]}.csv").unlink()
    with pytest.raises(InputError, match=r"FC2_T/3.csv: missing emotion CSV"):
        read_split(root, "val")
    with pytest.raises(InputError, match="test.csv: missing"):
        read_split(root, "test")


def test_prepare_dyadic_cli_errors(react_tree, tmp_path, capsys):
    from mien.cli.main import main
    from mien.data.react import load_appropriateness

    root, matrix = react_tree
    assert main(["prepare", "--mode", "dyadic", "-o", str(tmp_path / "o")]) == 2
    assert "no inputs given" in capsys.readouterr().err
    (root / "val" / "Emotion" / f"{SPLIT_ROWS[0][0]}.csv").write_text("h\n" + ",".join(["0"] * 26) + "\n")
    assert main(["prepare", "--mode", "dyadic", "--react-root", str(root), "--dyadic-features", "attrs",
                 "-o", str(tmp_path / "o")]) == 1  # the bad dyad is skipped and reported, the others written
    err = capsys.readouterr()
    assert "Expert_video/1.csv: rows have [26] columns, expected 25" in err.err
    assert "prepared 2 dyad(s)" in err.out
    keep = [1, 2, 4, 5]  # dyad 0 dropped: the matrix keeps the other dyads' rows/columns in both roles
    np.testing.assert_array_equal(load_appropriateness(tmp_path / "o"), matrix[np.ix_(keep, keep)])


def test_react_conversion_shards_and_dataset(react_tree, tmp_path):
    from mien.data.react import (
        DyadicDataset,
        load_appropriateness,
        read_emotion_csv,
        read_split,
        speaker_feature_names,
    )
    from mien.pipelines.prepare import PrepareOptions, prepare

    root, matrix = react_tree
    out = tmp_path / "dy"
    opts = PrepareOptions(mode="dyadic", react_root=str(root), react_split="val",
                          dyadic_features=("presence", "attrs", "mfcc"))
    rep = prepare([], str(out), opts)
    assert len(rep.ok) == 3 and not rep.failed and rep.samples == 3
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["kind"] == "dyadic" and manifest["items"] == 6
    np.testing.assert_array_equal(load_appropriateness(out), matrix)
    names = speaker_feature_names(out)
    assert names[:2] == ["presence", "attrs:AU01"] and len(names) == 1 + 25 + 13
    assert speaker_feature_names(out, ["attrs"]) == [f"attrs:{a}" for a in REACT_ATTRIBUTES]
    split = read_split(root, "val")
    items = list(DyadicDataset(out, window=40, stride=20, features=["attrs", "mfcc"]))
    assert len(items) == 6 * 2  # 60 frames → windows at 0 and 20, both roles of 3 dyads
    for it in items:
        assert set(it) >= {"speaker", "speaker_attrs", "listener_attrs", "session", "index"}
        assert it["speaker"].shape == (40, 38) and it["speaker"].dtype == np.float32
        assert it["speaker_attrs"].shape == it["listener_attrs"].shape == (40, 25)
        sp, li = split.item(it["index"])
        st = it["start"]
        np.testing.assert_allclose(it["speaker_attrs"], read_emotion_csv(sp.emotion)[st:st + 40])
        np.testing.assert_allclose(it["listener_attrs"], read_emotion_csv(li.emotion)[st:st + 40])
        np.testing.assert_allclose(it["speaker"][:, :25], it["speaker_attrs"])
    assert sorted({it["index"] for it in items}) == list(range(6))
    from mien.data.verify import verify_dataset

    assert [c.ok for c in verify_dataset(str(out))] == [True] * 3
    # resume: nothing redone; other settings refused
    assert prepare([], str(out), opts).resumed == 3
    with pytest.raises(ValueError, match="different settings"):
        prepare([], str(out), PrepareOptions(mode="dyadic", react_root=str(root), dyadic_features=("attrs",)))
    # a damaged matrix is caught when loading
    np.save(out / "appropriateness.npy", np.eye(4, dtype=bool))
    with pytest.raises(InputError, match=r"expected \(6, 6\)"):
        load_appropriateness(out)


def _frames(path: str) -> list[np.ndarray]:
    import av

    with av.open(path) as c:
        return [f.to_ndarray(format="rgb24") for f in c.decode(video=0)]


def test_prepare_dyadic_real_pair_and_bad_pair(shared_data, tmp_path):
    """A pairs CSV of two real talking clips (first 1.2 s) plus a pair whose listener has no face: the good
    pair is written with mien's attributes (NaN exactly where mien has no model), the bad one reported."""
    from mien.data.react import (
        ATTRIBUTES_FROM_MIEN,
        DyadicDataset,
        load_appropriateness,
        speaker_feature_names,
    )
    from mien.pipelines.prepare import PrepareOptions, prepare

    v = shared_data / "videos" / "talking"
    pairs = tmp_path / "pairs.csv"
    pairs.write_text("session,speaker_video,listener_video\n"
                     f"s1,{v / 'Input__00002.mp4'},{v / 'Input__00010.mp4'}\n"
                     f"noface,{v / 'Input__00002.mp4'},{shared_data / 'samples' / 'no_face.mp4'}\n")
    out = tmp_path / "dy"
    logged: list[str] = []
    opts = PrepareOptions(mode="dyadic", end=1.2, dyadic_features=("presence", "attrs", "au", "pose", "mfcc"))
    rep = prepare([str(pairs)], str(out), opts, log=logged.append)
    assert [o["input"] for o in rep.ok] == ["s1"] and [f["input"] for f in rep.failed] == ["noface"]
    assert "no_face.mp4: no face found" in logged[0]
    names = speaker_feature_names(out)
    assert names[0] == "presence" and "au:AU05" in names and names[-1] == "mfcc:12"
    items = list(DyadicDataset(out, window=750))
    assert [it["index"] for it in items] == [0, 1] and items[0]["speaker"].shape == (30, len(names))
    assert np.isfinite(items[0]["speaker"]).all()
    la = items[0]["listener_attrs"]
    filled = [a in ATTRIBUTES_FROM_MIEN for a in REACT_ATTRIBUTES]
    assert np.isfinite(la[:, filled]).all() and np.isnan(la[:, [not f for f in filled]]).all()
    np.testing.assert_allclose(la[:, 17:24].sum(1), 1.0, atol=1e-4)  # face-api's 7 classes; contempt NaN
    np.testing.assert_array_equal(items[1]["speaker_attrs"], la)  # mirrored item: b speaks
    assert load_appropriateness(out).shape == (2, 2)
    report = json.loads((out / "report.json").read_text())
    assert report["failed"][0]["input"] == "noface"


def test_prepare_dyadic_two_face_video(shared_data, tmp_path):
    """One video with two people side by side (a video-call layout made from two real clips): the two largest
    tracks become the two people, person a on the left. (shared/data has no real two-person video.)"""
    from mien.data.react import DyadicDataset
    from mien.io.writer import VideoWriter
    from mien.pipelines.prepare import PrepareOptions, prepare

    v = shared_data / "videos" / "talking"
    left, right = _frames(str(v / "Input__00002.mp4"))[:25], _frames(str(v / "Pose_Source__00473.mp4"))[:25]
    call = tmp_path / "call.mp4"
    with VideoWriter(call, 25) as w:
        for a, b in zip(left, right, strict=True):
            w.write(np.concatenate([a, b], 1))
    out = tmp_path / "dy2"
    rep = prepare([str(call)], str(out), PrepareOptions(mode="dyadic", dyadic_features=("presence", "attrs")))
    assert len(rep.ok) == 1, rep.failed
    a_speaks, b_speaks = list(DyadicDataset(out))
    assert a_speaks["speaker"].shape == (25, 26) and a_speaks["speaker"][:, 0].mean() > 0.9
    assert b_speaks["speaker"][:, 0].mean() > 0.9  # both people found in (nearly) every frame
    np.testing.assert_array_equal(a_speaks["listener_attrs"], b_speaks["speaker_attrs"])
    assert np.nanmean(np.abs(a_speaks["speaker_attrs"] - b_speaks["speaker_attrs"])) > 0.01  # two different faces
    done = json.loads(next((out / "done").glob("*.json")).read_text())
    assert done["source_a"] != done["source_b"] and done["source_a"].startswith(str(call) + "#face")


def test_render_reaction_video_and_plot(shared_data, tmp_path):
    from mien.viz.reaction import plot_reactions, reaction_meshes, render_reaction_video

    t = 12
    attrs = np.zeros((t, 25), np.float32)
    attrs[6:, 7] = 1.0  # AU12 (lip corner puller) on from frame 6
    attrs[:, 17:] = 1 / 8
    attrs[:, 15:17] = np.nan
    meshes = reaction_meshes(attrs)
    assert meshes.shape == (t, 478, 3) and np.abs(meshes[6] - meshes[0]).max() > 1.0
    np.testing.assert_array_equal(meshes[0], meshes[5])
    p = render_reaction_video(attrs, 25.0, tmp_path / "r.mp4", size=64,
                              speaker_video=str(shared_data / "videos" / "talking" / "Input__00002.mp4"))
    frames = _frames(str(p))
    assert len(frames) == t and frames[0].shape == (64, 128, 3)
    assert np.abs(frames[8][:, 64:].astype(int) - frames[2][:, 64:]).mean() > 0.1  # the mouth moved
    png = plot_reactions(attrs, np.stack([attrs, attrs[::-1]]), tmp_path / "r.png")
    assert png.stat().st_size > 10_000
    with pytest.raises(ValueError, match=r"\(T, 25\)"):
        render_reaction_video(np.zeros((5, 24)), 25.0, tmp_path / "x.mp4")


def test_speaker_features_groups_and_errors(analyzed):
    from mien.data.react import attributes_25, feature_columns, frame_grid, speaker_features

    r = analyzed("samples/single_face.mp4", au=True, emotion=True)
    times = frame_grid(r, fps=25.0)
    assert len(times) == 60  # 2.4 s at 25 fps
    x = speaker_features(r, None, ["presence", "pose", "emotion"], times=times)
    assert x.shape == (60, 1 + 3 + 7) and x.dtype == np.float32 and np.isfinite(x).all()
    assert feature_columns(r, None, ["presence", "pose"]) == ["presence", "pose:yaw", "pose:pitch", "pose:roll"]
    np.testing.assert_allclose(x[x[:, 0] == 1, 1], np.interp(times, r.t_sec, r.yaw_deg)[x[:, 0] == 1] / 90, atol=0.05)
    a = attributes_25(r, times)
    assert a.shape == (60, 25) and np.isnan(a[:, REACT_ATTRIBUTES.index("AU10")]).all()
    with pytest.raises(ValueError, match="unknown speaker feature 'smile'"):
        speaker_features(r, None, ["smile"])
    with pytest.raises(ValueError, match="'logmel' needs audio features"):
        speaker_features(r, None, ["logmel"])
    with pytest.raises(ValueError, match="'tokens' needs the expression_token column"):
        speaker_features(r, None, ["tokens"])
