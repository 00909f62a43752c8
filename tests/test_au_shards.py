"""AU labels joined at `mien prepare --au-labels` time, and AU training from those shards.

Real talking-head videos with synthetic per-frame labels (a function of the source frame index), so the join
can be checked exactly; the labels CSVs and datasets live in tmp_path only.
"""

from __future__ import annotations

import csv
import json

import av
import numpy as np
import pytest

from mien.cli.main import main as mien_main
from mien.data.labels.au_csv import read_au_labels
from mien.data.reader import iter_samples, open_dataset
from mien.pipelines.prepare import PrepareOptions, prepare

pytest.importorskip("torch")
pytest.importorskip("lightning")
pytest.importorskip("timm")

VIDEOS = {"A": "videos/talking/Input__00010.mp4", "B": "videos/talking/Input__00002.mp4"}  # 4.2 s, 5.0 s; 25 fps
# the 14 AUs of configs/au/tiny.yaml, written in mixed DISFA spellings (AU1, AU02 …)
CSV_AUS = ["AU1", "AU02", "AU4", "AU05", "AU6", "AU07", "AU9", "AU12", "AU15", "AU17", "AU23", "AU24", "AU25",
           "AU27"]
FACS = [f"AU{int(n[2:]):02d}" for n in CSV_AUS]
FPS, CLIP_S, CROP = 5.0, 1.0, 64
PREP = ["--fps", str(FPS), "--clip-seconds", str(CLIP_S), "--crop-size", str(CROP), "--mode", "all", "--no-audio",
        "--no-progress"]


def _value(frame: int, j: int) -> float:
    """Synthetic label of AU column j at source frame ``frame``: FACS 0–5, NaN where "not coded"."""
    if frame % 17 == 5:
        return np.nan  # the whole row is missing from the CSV
    if j == 0 and frame % 7 == 3:
        return np.nan  # blank cell
    if j == 1 and frame % 11 == 4:
        return np.nan  # 9 = not coded
    return float((frame + j) % 6)


def _cell(frame: int, j: int) -> str:
    v = _value(frame, j)
    if np.isnan(v):
        return "9" if j == 1 else ""
    return f"{v:g}"


def _pts(path) -> np.ndarray:
    with av.open(str(path)) as c:
        return np.array([float(f.pts * f.time_base) for f in c.decode(video=0)])


@pytest.fixture(scope="module")
def labelled(shared_data, tmp_path_factory):
    """Both videos prepared through the CLI with one labels CSV (``video`` = stem for A, a path for B)."""
    tmp = tmp_path_factory.mktemp("au_shards")
    pts = {k: _pts(shared_data / v) for k, v in VIDEOS.items()}
    labels = tmp / "labels.csv"
    with open(labels, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["video", "frame", *CSV_AUS, "coder"])
        for k, rel in VIDEOS.items():
            vid = (shared_data / rel).stem if k == "A" else rel
            for i in range(len(pts[k])):
                if i % 17 != 5:
                    w.writerow([vid, i, *[_cell(i, j) for j in range(len(CSV_AUS))], "synthetic"])
    out = tmp / "ds"
    args = ["prepare", *[str(shared_data / v) for v in VIDEOS.values()], "-o", str(out), *PREP,
            "--au-labels", str(labels)]
    assert mien_main(args) == 0
    return {"tmp": tmp, "out": out, "labels": labels, "pts": pts, "args": args}


def test_au_npy_matches_the_join_by_time(labelled, shared_data):
    out, pts = labelled["out"], labelled["pts"]
    info = open_dataset(str(out))
    assert info.manifest["au_names"] == FACS
    assert info.manifest["au_labels"]["videos_without_labels"] == []
    assert info.index["has_au"].all() and len(info.index) == 9  # 4 + 5 one-second clips
    seen = 0
    for s in iter_samples(str(out), video=False, audio=False):
        meta = s["json"]
        k = "A" if meta["source"].endswith(VIDEOS["A"]) else "B"
        au = s["au.npy"]
        assert au.shape == (meta["frames"], len(FACS)) and au.dtype == np.float32
        assert meta["has_au"] is True and meta["au_names"] == FACS
        # each clip frame has the labels of the source frame it shows (found by presentation time)
        src = [int(np.argmin(np.abs(pts[k] - t))) for t in s["times.npy"][:, 1]]
        want = np.array([[_value(i, j) for j in range(len(FACS))] for i in src], np.float32)
        np.testing.assert_array_equal(au, want)  # NaNs in the same places
        assert meta["au_coded_frames"] == int(np.isfinite(want).any(1).sum())
        seen += 1
    assert seen == 9
    # the test labels do exercise missing rows, blank cells and 9s
    all_au = np.concatenate([s["au.npy"] for s in iter_samples(str(out), video=False, audio=False)])
    assert np.isnan(all_au).all(1).any() and np.isnan(all_au[:, 0]).any() and np.isnan(all_au[:, 1]).any()


def test_resume_and_changed_labels(labelled, capsys):
    assert mien_main(labelled["args"]) == 0
    assert "(2 already done" in capsys.readouterr().out
    changed = labelled["tmp"] / "labels.csv"
    backup = changed.read_text()
    try:
        changed.write_text(backup.replace(",synthetic", ",other", 1))
        assert mien_main(labelled["args"]) == 2  # same path, different contents: not the same dataset
        assert "different settings" in capsys.readouterr().err
    finally:
        changed.write_text(backup)


def test_label_folder_by_time_and_unlabelled_video(labelled, shared_data, tmp_path):
    """Folder of per-video CSVs keyed by time_sec (labels on even source frames only); video B has none."""
    pts = labelled["pts"]["A"]
    folder = tmp_path / "labels"
    folder.mkdir()
    with open(folder / "Input__00010.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["time_sec", "AU12", "au_25"])
        for i in range(0, len(pts), 2):
            w.writerow([f"{pts[i]:.6f}", i % 6, 5 - i % 6])
    out = tmp_path / "ds"
    rep = prepare([str(shared_data / v) for v in VIDEOS.values()], str(out),
                  PrepareOptions(fps=FPS, clip_seconds=CLIP_S, crop_size=CROP, mode="all", audio=False,
                                 au_labels=str(folder)))
    assert rep.no_au_labels == [str(shared_data / VIDEOS["B"])]
    manifest = open_dataset(str(out)).manifest
    assert manifest["au_names"] == ["AU12", "AU25"]
    for s in iter_samples(str(out), video=False, audio=False):
        if s["json"]["source"].endswith(VIDEOS["B"]):
            assert "au.npy" not in s and s["json"]["has_au"] is False
            continue
        src = [int(np.argmin(np.abs(pts - t))) for t in s["times.npy"][:, 1]]
        # a label within half a source frame (odd frames are 1 frame from the nearest label: not coded)
        want = np.array([[i % 6, 5 - i % 6] if i % 2 == 0 else [np.nan, np.nan] for i in src], np.float32)
        np.testing.assert_array_equal(s["au.npy"], want)
    report = json.loads((out / "report.json").read_text())
    assert report["no_au_labels"] == rep.no_au_labels


@pytest.mark.parametrize("header,row,reason", [
    (["video", "frame", "AU1"], ["Input__00010", "0", "7"], "line 2: AU1 value 7 is outside 0-5"),
    (["video", "frame", "AU1"], ["Input__00010", "0", "high"], "line 2: AU1 value 'high' is not a number"),
    (["video", "AU1"], ["Input__00010", "1"], "needs a frame (0-based source frame) or time_sec column"),
    (["frame", "AU1"], ["0", "1"], "needs a video column"),
    (["video", "frame", "smile"], ["Input__00010", "0", "1"], "has no AU column"),
    (["video", "frame", "AU1"], ["Input__00010", "-1", "1"], "line 2: frame '-1' is not a 0-based frame index"),
])
def test_bad_labels_csv_is_one_line_error(shared_data, tmp_path, capsys, header, row, reason):
    bad = tmp_path / "bad.csv"
    bad.write_text(",".join(header) + "\n" + ",".join(row) + "\n")
    out = tmp_path / "ds"
    assert mien_main(["prepare", str(shared_data / VIDEOS["A"]), "-o", str(out), *PREP, "--au-labels", str(bad)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"mien: error: {bad}: ") and reason in err
    assert "\n" not in err and not out.exists()  # checked before anything is written


def test_duplicate_frame_is_refused(tmp_path):
    bad = tmp_path / "dup.csv"
    bad.write_text("video,frame,AU01\nx,3,1\nx,3,2\n")
    with pytest.raises(ValueError, match=r"dup\.csv: line 3: frame 3 of video x is labelled twice"):
        read_au_labels(str(bad))


def test_train_au_from_shards(labelled, tmp_path, torch_one_thread):
    """`mien train au fit --config tiny` on the labelled shards (subject-disjoint 2-fold), then FixMatch with the
    same shards as the unlabelled set (validation subject left out of it)."""
    from mien.cli.train import build_cli
    from mien.tasks.au import AUDataModule, ImageInput, LabelSource, SplitOptions

    out = str(labelled["out"])
    common = ["fit", "--config", "tiny", "--data.labels.dataset", "shards", "--data.labels.shards", out,
              "--data.split.n_folds", "2",
              f"--trainer.default_root_dir={tmp_path}", f"--trainer.logger.init_args.save_dir={tmp_path}",
              "--trainer.fast_dev_run=1", "--data.batch_size=8"]
    assert mien_main(["train", "au", *common]) == 0

    cli = build_cli("au", [*common, "--model.ssl.kind=defixmatch", f"--data.unlabeled.shards={out}",
                           "--data.unlabeled.batch_size=4", "--data.unlabeled.max_items=16"])
    assert cli.trainer.global_step == 1
    assert "train/loss_anti" in cli.trainer.callback_metrics and "val/f1_macro" in cli.trainer.callback_metrics
    dm = cli.datamodule
    train_s, val_s = set(dm.full.subjects[dm.train_idx]), set(dm.full.subjects[dm.val_idx])
    assert train_s and val_s and train_s.isdisjoint(val_s)
    assert dm.unlabeled_set.exclude == val_s  # the validation subject never feeds the unlabelled loss
    assert cli.model.au_names == FACS and dm.full.images.shape[1:] == (64, 64, 3)
    x = next(iter(dm.unlabeled_set))["image"]
    assert x.shape == (3, 64, 64) and 0 <= float(x.min()) and float(x.max()) <= 1

    # labelled frames = clip frames with at least one coded AU; labels as FACS / 5 and occurrence ≥ 1
    dm2 = AUDataModule(LabelSource(dataset="shards", shards=out, au_names=["AU1", "AU12"]), ImageInput(size=32),
                       SplitOptions(n_folds=2), shard_crop="aligned")
    dm2.setup()
    ds = dm2.full
    raw = np.concatenate([s["au.npy"][:, [0, 7]] for s in iter_samples(out, video=False, audio=False)])
    raw = raw[np.isfinite(raw).any(1)]
    assert len(ds) == len(raw) and ds.au_names == ["AU1", "AU12"]
    np.testing.assert_allclose(ds.inten, raw / 5.0)
    np.testing.assert_array_equal(ds.occ, np.where(np.isfinite(raw), raw >= 1, np.nan))
    item = ds[0]
    assert item["image"].shape == (3, 32, 32) and item["occ_mask"].shape == (2,)
