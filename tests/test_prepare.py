"""`mien prepare` on real videos: round trip, alignment, keywords, resume after kill -9, bad inputs, no audio,
memory:// stores, worker/node splits, `mien dataset info|show`."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import av
import numpy as np
import pytest

from mien.cli.main import main as mien_main
from mien.data import store
from mien.data.reader import iter_samples, open_dataset, shard_urls
from mien.data.schema import SCHEMA_VERSION
from mien.pipelines.prepare import PrepareOptions, prepare

FPS = 25.0
CLIP_S = 1.0
T = int(CLIP_S * FPS)
CROP = 128
D0 = "videos/expressive/driving_d0.mp4"  # 3.1 s, 512², no audio stream
TALK = "videos/talking/Input__00010.mp4"  # 4.2 s, 224², AAC 16 kHz
NOFACE = "samples/no_face.mp4"
# the same settings through the API and the CLI (resume test)
OPTS = dict(clip_seconds=CLIP_S, fps=FPS, crop_size=CROP, clips_per_video=2, shard_samples=1)
CLI_OPTS = ["--clip-seconds", CLIP_S, "--fps", FPS, "--crop-size", CROP, "--clips-per-video", 2,
            "--shard-samples", 1, "--no-progress"]


def _bad_files(folder: Path, shared: Path) -> list[str]:
    folder.mkdir(parents=True, exist_ok=True)
    trunc = folder / "truncated.mp4"
    trunc.write_bytes((shared / "videos/talking/Input__00002.mp4").read_bytes()[:20000])
    junk = folder / "junk.mp4"
    junk.write_bytes(np.random.default_rng(0).integers(0, 256, 50000, dtype=np.uint8).tobytes())
    return [str(trunc), str(junk)]


@pytest.fixture(scope="module")
def batch(shared_data, tmp_path_factory):
    """One uninterrupted run over two good videos (one without audio), a face-less and two corrupt files."""
    tmp = tmp_path_factory.mktemp("prep")
    inputs = [str(shared_data / D0), str(shared_data / TALK), str(shared_data / NOFACE),
              *_bad_files(tmp / "bad", shared_data)]
    out = tmp / "ds"
    report = prepare(inputs, str(out), PrepareOptions(**OPTS))
    return {"inputs": inputs, "out": out, "report": report, "tmp": tmp}


def _keys(root) -> list[str]:
    return sorted(open_dataset(str(root)).index["key"])


def test_round_trip_shapes_and_durations(batch, shared_data):
    out = batch["out"]
    info = open_dataset(str(out))
    assert info.manifest["schema_version"] == SCHEMA_VERSION
    assert info.manifest["num_samples"] == len(info.index) == 4  # 2 clips from each good video
    assert sum(s["samples"] for s in info.manifest["shards"]) == 4
    samples = list(iter_samples(str(out)))
    assert sorted(s["__key__"] for s in samples) == _keys(out)
    for s in samples:
        meta = s["json"]
        assert meta["frames"] == T and meta["fps"] == FPS
        assert meta["end_sec"] - meta["start_sec"] == pytest.approx(CLIP_S)
        assert s["mp4"].shape == (T, CROP, CROP, 3) and s["mp4"].dtype == np.uint8
        assert s["landmarks.npy"].shape == (T, 478, 3) and s["landmarks.npy"].dtype == np.float32
        assert s["affine.npy"].shape == (T, 2, 3)
        assert s["pose.npy"].shape == (T, 6) and s["openness.npy"].shape == (T, 3)
        t = s["times.npy"]
        np.testing.assert_allclose(np.diff(t[:, 0]), 1 / FPS, atol=1e-9)
        # source frames chosen by presentation time: never after the clip time, less than a source frame before
        assert np.all(t[:, 1] <= t[:, 0] + 1e-6) and np.all(t[:, 0] - t[:, 1] < 1 / 24.0)
        assert meta["subject_id"] in (0, 1)
        if meta["has_audio"]:
            assert s["flac"].shape == (round(CLIP_S * 16000),)  # audio length = clip duration
            assert s["logmel.npy"].shape == (T, 80) and s["mfcc.npy"].shape == (T, 13)
            assert np.abs(s["flac"]).max() > 0.01  # real speech, not padding
        else:
            assert "flac" not in s and "logmel.npy" not in s


def test_no_audio_source_kept(batch, shared_data):
    with av.open(str(shared_data / D0)) as c:
        assert not c.streams.audio  # the real edge case
    idx = open_dataset(str(batch["out"])).index
    d0 = idx[idx["source"].str.endswith("driving_d0.mp4")]
    talk = idx[idx["source"].str.endswith("Input__00010.mp4")]
    assert len(d0) == 2 and not d0["has_audio"].any()
    assert len(talk) == 2 and talk["has_audio"].all()


def test_bad_and_faceless_videos_reported(batch):
    rep = json.loads((batch["out"] / "report.json").read_text())
    failed = {Path(f["input"]).name: f["reason"] for f in rep["failed"]}
    assert set(failed) == {"truncated.mp4", "junk.mp4", "no_face.mp4"}
    assert "no face" in failed["no_face.mp4"]
    assert all(r for r in failed.values())
    assert len(rep["ok"]) == 2 and rep["samples"] == 4


def _ratios(lm: np.ndarray) -> np.ndarray:
    """inter-ocular distance / eye-to-mouth distance and mouth width / inter-ocular, per frame."""
    from mien.face.align import alignment_points

    el, er, mouth = alignment_points(lm)
    io = np.linalg.norm(er - el, axis=-1)
    em = np.linalg.norm(mouth - (el + er) / 2, axis=-1)
    mw = np.linalg.norm(lm[..., 61, :2] - lm[..., 291, :2], axis=-1)
    return np.stack([io / em, mw / io], -1)


def test_crops_are_similarities_not_stretched(batch, shared_data):
    """The crop transform is a similarity, and faces re-detected in the crop video keep the source geometry."""
    import mien
    from mien.face.landmarker import MediaPipeFaceMesh

    res = mien.analyze(shared_data / D0, end=1.6)
    s = next(s for s in iter_samples(str(batch["out"])) if s["json"]["video_key"].startswith("driving_d0"))
    A = s["affine.npy"].astype(np.float64)
    np.testing.assert_allclose(A[:, 0, 0], A[:, 1, 1], rtol=1e-5)
    np.testing.assert_allclose(A[:, 0, 1], -A[:, 1, 0], rtol=1e-5, atol=1e-7)
    # stored landmarks = source landmarks under the affine → same ratios as the source frames
    src_t = s["times.npy"][:, 1]
    rows = [int(np.argmin(np.abs(res.t_sec - t))) for t in src_t if t <= res.t_sec.max()]
    r_src = _ratios(res.landmarks[rows])
    np.testing.assert_allclose(_ratios(s["landmarks.npy"][: len(rows)]), r_src, rtol=1e-3)
    # the pixels: re-detect landmarks on the decoded crops; ratios agree with the source within 4 %
    with MediaPipeFaceMesh(1, static_image_mode=True, detector="full") as mesh:
        redet, stored = [], []
        for j in range(0, T, 2):
            faces = mesh.process(np.ascontiguousarray(s["mp4"][j]))
            if faces:
                redet.append(faces[0].landmarks)
                stored.append(s["landmarks.npy"][j])
    assert len(redet) >= 3
    redet, stored = np.stack(redet), np.stack(stored)
    # per-frame re-detection noise is a few %; a stretch shifts every frame the same way, so compare medians.
    # Ratio 0 (inter-ocular / eye-to-mouth) compares a horizontal with a vertical distance: the one a stretch
    # moves. Ratio 1 (mouth width / inter-ocular) is horizontal/horizontal; MediaPipe on a 128 px crop reads the
    # mouth up to ~5 % narrower than on the 512 px source, so it only guards against gross errors.
    rel = np.median(_ratios(redet) / _ratios(stored), axis=0)
    assert abs(rel[0] - 1) < 0.03, rel
    assert abs(rel[1] - 1) < 0.08, rel
    stretched = redet * np.array([1.1, 1.0, 1.0])  # what a 10 % horizontal stretch would look like
    assert abs(np.median(_ratios(stretched)[:, 0] / _ratios(stored)[:, 0]) - 1) > 0.06
    err = np.linalg.norm(redet[..., :2] - stored[..., :2], axis=-1).mean()
    assert err < 0.03 * CROP  # crop pixels and crop landmarks are registered


def test_dataset_cli_info_and_show(batch, capsys, tmp_path):
    out = str(batch["out"])
    assert mien_main(["dataset", "info", out, "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["samples"] == 4 and info["videos"] == 2 and info["subjects"] == 2 and info["with_audio"] == 2
    assert info["duration_sec"] == pytest.approx(4 * CLIP_S)
    assert len(info["shards"]) == 4 and all(s["bytes"] > 0 for s in info["shards"])
    png = tmp_path / "sheet.png"
    assert mien_main(["dataset", "show", out, "--n", "3", "-o", str(png)]) == 0
    import PIL.Image

    with PIL.Image.open(png) as im:
        assert im.size[0] == 4 * 160 and im.size[1] == 3 * (160 + 18)


def test_node_and_worker_splits_cover_every_sample_once(batch):
    out = str(batch["out"])
    everything = _keys(out)
    seen = []
    for rank in range(2):
        for worker in range(2):
            seen += [s["__key__"] for s in iter_samples(out, video=False, audio=False, node=(rank, 2),
                                                       worker=(worker, 2))]
    assert sorted(seen) == everything


def test_clip_dataset_tensors_and_dataloader_workers(batch):
    torch = pytest.importorskip("torch")
    from mien.data import ClipDataset

    out = str(batch["out"])
    items = list(ClipDataset(out))
    assert sorted(x["__key__"] for x in items) == _keys(out)
    x = items[0]
    assert x["video"].shape == (T, 3, CROP, CROP) and x["video"].dtype == torch.uint8
    assert x["landmarks"].shape == (T, 478, 3) and x["affine"].shape == (T, 2, 3)
    loader = torch.utils.data.DataLoader(ClipDataset(out), batch_size=None, num_workers=2)
    assert sorted(x["__key__"] for x in loader) == _keys(out)


def test_lightning_datamodule_subject_disjoint(batch):
    pytest.importorskip("torch")
    pytest.importorskip("lightning")
    from mien.data.datamodule import ClipDataModule

    dm = ClipDataModule(str(batch["out"]), batch_size=2, num_workers=0, val_fraction=0.5)
    dm.setup("fit")
    train = [b for b in dm.train_dataloader()]
    val = [b for b in dm.val_dataloader()]
    tk = {k for b in train for k in b["__key__"]}
    vk = {k for b in val for k in b["__key__"]}
    assert tk | vk == set(_keys(batch["out"])) and not tk & vk
    assert not {m["subject_id"] for b in train for m in b["meta"]} & {m["subject_id"] for b in val for m in b["meta"]}
    assert train[0]["video"].shape == (2, T, 3, CROP, CROP)


def _run_cli(args, **kw):
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    return subprocess.Popen([sys.executable, "-m", "mien", "prepare", *map(str, args)], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True, **kw)


def test_resume_after_kill_gives_identical_keys(batch):
    inputs, ref = batch["inputs"], _keys(batch["out"])
    out = batch["tmp"] / "killed"
    args = [*inputs, "-o", out, *CLI_OPTS, "--workers", 2]
    proc = _run_cli(args)
    deadline = time.time() + 120
    while time.time() < deadline and proc.poll() is None:  # kill -9 as soon as one video is complete
        if (out / "done").is_dir() and any(p.suffix == ".json" for p in (out / "done").iterdir()):
            break
        time.sleep(0.05)
    assert proc.poll() is None, "the run ended before it could be killed"
    os.killpg(proc.pid, signal.SIGKILL)  # the CLI process and its workers
    proc.wait()
    assert proc.returncode == -signal.SIGKILL
    assert not (out / "manifest.json").exists()
    assert len(list((out / "done").glob("*.json"))) < len(inputs)
    # leave debris like a kill in the middle of a shard write: a temporary shard and a stray shard
    (out / "shards").mkdir(parents=True, exist_ok=True)
    (out / "shards" / f".{store.video_key(inputs[1])}-0000.tar{store.TMP_TAG}dead").write_bytes(b"partial")
    again = _run_cli(args)
    stdout, stderr = again.communicate(timeout=300)
    assert again.returncode == 1, stderr  # some inputs are bad: exit 1, the rest complete
    assert _keys(out) == ref
    assert not [p for p in (out / "shards").iterdir() if store.TMP_TAG in p.name]
    assert sorted(p.name for p in (out / "shards").iterdir()) == sorted(
        s["name"] for s in open_dataset(str(out)).manifest["shards"])
    # second form: drop the last completed unit (marker) and leave a temp file: identical keys again
    marker = out / "done" / f"{store.video_key(inputs[1])}.json"
    marker.unlink()
    (out / "done" / f".{marker.name}{store.TMP_TAG}x").write_text("{")
    again = _run_cli(args)
    again.communicate(timeout=300)
    assert _keys(out) == ref
    assert len(shard_urls(str(out))) == 4


def test_keyword_mode_with_transcript(shared_data, tmp_path):
    tx = tmp_path / "tx"
    tx.mkdir()
    # JSON segments: "smile" twice at (almost) the same time → one window; "laugh" near the end → window
    # before it. Input__00010 is 4.24 s = 106 clip frames at 25 fps.
    (tx / "Input__00010.json").write_text(json.dumps([
        {"start": 0.2, "end": 0.8, "text": "Hello there."},
        {"start": 1.0, "end": 1.4, "text": "Smile!"},
        {"start": 1.01, "end": 1.3, "text": "smile"},
        {"start": 3.9, "end": 4.2, "text": "laugh"},
    ]))
    out = tmp_path / "kw"
    import importlib.util

    egemaps = importlib.util.find_spec("opensmile") is not None  # optional `audio` extra
    rc = mien_main(["prepare", str(shared_data / TALK), "-o", str(out), "--mode", "keywords", "--transcripts",
                    str(tx), "--keywords", "smile,laugh,surprised", "--offset-seconds", "1.0",
                    "--clip-seconds", str(CLIP_S), "--crop-size", "64", "--no-progress",
                    *(["--egemaps"] if egemaps else [])])
    assert rc == 0
    for s in iter_samples(str(out), video=False):
        assert s["json"]["keyword"] in ("smile", "laugh") and s["flac"].shape == (16000,)
        if egemaps:
            assert s["egemaps.npy"].shape == (88,) and np.isfinite(s["egemaps.npy"]).all()
    idx = open_dataset(str(out)).index.sort_values("start_sec")
    assert list(idx["keyword"]) == ["laugh", "smile"]
    # laugh at 3.9 s: 4.9 s + 1 s is past the end → window ends 1 s before it: starts at 2.9 - 1.0 = 1.9 s
    assert list(idx["start_sec"]) == pytest.approx([1.92, 2.0])
    assert list(idx["mode"]) == ["keywords", "keywords"]


def test_memory_fsspec_round_trip(shared_data):
    import fsspec

    fs = fsspec.filesystem("memory")
    fs.pipe("/src/raw/d0.mp4", (shared_data / D0).read_bytes())
    fs.pipe("/src/raw/broken.mp4", b"not a video at all")
    report = prepare(["memory://src/raw/*.mp4"], "memory://out/ds", PrepareOptions(**OPTS), workers=2)
    assert [Path(f["input"]).name for f in report.failed] == ["broken.mp4"]
    assert fs.exists("/out/ds/manifest.json") and fs.exists("/out/ds/index.parquet")
    assert not [p for p in fs.find("/out/ds") if store.TMP_TAG in p]
    samples = list(iter_samples("memory://out/ds"))
    assert len(samples) == 2
    for s in samples:
        src = s["json"]["source"]  # fsspec's canonical URL of the input
        assert src.startswith("memory://") and src.endswith("/src/raw/d0.mp4")
        assert s["mp4"].shape == (T, CROP, CROP, 3) and not s["json"]["has_audio"]
    try:  # the torch reader on a URL too (CI installs torch)
        from mien.data import ClipDataset

        items = list(ClipDataset("memory://out/ds"))
        assert sorted(x["__key__"] for x in items) == sorted(s["__key__"] for s in samples)
        assert tuple(items[0]["video"].shape) == (T, 3, CROP, CROP)
    except ImportError:
        pass
    # resume on a memory store: nothing redone, same keys
    again = prepare(["memory://src/raw/*.mp4"], "memory://out/ds", PrepareOptions(**OPTS))
    assert again.resumed == 2 and again.samples == 2
    fs.rm("/out", recursive=True)
    fs.rm("/src", recursive=True)


def test_ray_executor_same_keys(batch, tmp_path):
    pytest.importorskip("ray")
    inputs = [batch["inputs"][0], batch["inputs"][-1]]  # driving_d0 + junk.mp4
    rep = prepare(inputs, str(tmp_path / "ray"), PrepareOptions(**OPTS), workers=2, executor="ray")
    assert [Path(f["input"]).name for f in rep.failed] == ["junk.mp4"]
    ref = [k for k in _keys(batch["out"]) if k.startswith("driving_d0")]
    assert _keys(tmp_path / "ray") == ref


def test_changed_settings_refused(batch):
    with pytest.raises(ValueError, match="different settings"):
        prepare(batch["inputs"][:1], str(batch["out"]), PrepareOptions(**(OPTS | {"crop_size": 96})))


def test_scored_and_all_modes(shared_data, tmp_path):
    src = str(shared_data / D0)
    rep = prepare([src], str(tmp_path / "all"), PrepareOptions(**(OPTS | {"mode": "all"})))
    starts = sorted(open_dataset(str(tmp_path / "all")).index["start_sec"])
    assert rep.samples == len(starts) == 3 and starts == pytest.approx([0.0, 1.0, 2.0])  # 78 frames, stride 1 s
    rep = prepare([src], str(tmp_path / "sc"), PrepareOptions(**(OPTS | {"mode": "scored", "top_k": 2})))
    idx = open_dataset(str(tmp_path / "sc")).index
    assert len(idx) == 2 and idx["score"].notna().all()
    s = idx["start_sec"].sort_values().to_numpy()
    assert s[1] - s[0] >= CLIP_S - 1e-9  # non-overlapping


def test_subject_mapping_file(shared_data, tmp_path):
    from mien.pipelines.prepare.run import assign_subjects, read_subjects

    csv = tmp_path / "subjects.csv"
    csv.write_text("video,subject\ndriving_d0.mp4,alice\nInput__00010,bob\nother.mp4,alice\n")
    mapping = read_subjects(str(csv))
    srcs = [str(shared_data / TALK), str(shared_data / D0), "/x/other.mp4", "/x/unmapped.mp4"]
    subj = assign_subjects(srcs, mapping)
    assert subj[srcs[1]] == ("alice", 0) and subj[srcs[2]] == ("alice", 0)
    assert subj[srcs[0]] == ("bob", 1) and subj[srcs[3]] == ("unmapped", 2)
    assert assign_subjects(list(reversed(srcs)), mapping) == subj  # order-independent, no hash()


def test_bad_cli_usage_is_one_line(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "mien", "prepare", str(tmp_path / "x.mp4"), "-o",
                           str(tmp_path / "o"), "--mode", "keywords"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert proc.stderr.strip().startswith("mien: error:") and "keywords" in proc.stderr
    shutil.rmtree(tmp_path / "o", ignore_errors=True)


def test_shard_crops_match_the_inference_crop(batch, shared_data):
    """A model trained on shards sees at inference (mien.face.crops.face_crop with the shard's crop contract)
    what it saw in training: the same face framing, up to the shards' temporal smoothing and H.264."""
    import mien
    from mien.data.datamodule import ClipDataModule
    from mien.face.crops import crop_square, face_crop, square_box
    from mien.io.video import VideoSource

    dm = ClipDataModule(str(batch["out"]))
    dm.setup()
    assert dm.crop_contract == "aligned-ffhq-0.0"
    s = next(s for s in iter_samples(str(batch["out"])) if s["json"]["video_key"].startswith("driving_d0"))
    res = mien.analyze(shared_data / D0, end=2.0)
    frames = {fr.index: fr.image for fr in VideoSource(shared_data / D0, end=2.0)}
    d_aligned, d_box = [], []
    for j in range(0, T, 5):
        t = s["times.npy"][j, 1]
        r = int(np.argmin(np.abs(res.t_sec - t)))
        img = frames[int(res.frame[r])]
        mine = face_crop(img, dm.crop_contract, CROP, res.bbox[r], res.landmarks[r]).astype(float)
        box = crop_square(img, square_box(res.bbox[r], 1.1), CROP).astype(float)
        d_aligned.append(np.abs(mine - s["mp4"][j]).mean())
        d_box.append(np.abs(box - s["mp4"][j]).mean())
    assert np.mean(d_aligned) < 8, d_aligned  # same framing (smoothing + compression only)
    assert np.mean(d_box) > 2 * np.mean(d_aligned), (d_aligned, d_box)  # a different crop is far off


def test_second_decoding_pass_equals_frame_cache(batch, shared_data, tmp_path, monkeypatch):
    """Pass 2 uses pass 1's decoded frames when they fit FRAME_CACHE_BYTES, else decodes again: same samples."""
    from mien.data.shards import decode_mp4
    from mien.pipelines.prepare import select

    monkeypatch.setattr(select, "FRAME_CACHE_BYTES", 0)
    out = tmp_path / "nocache"
    prepare([str(shared_data / D0)], str(out), PrepareOptions(**OPTS))
    ref = {s["__key__"]: s for s in iter_samples(str(batch["out"]), decode=False)
           if s["__key__"].startswith("driving_d0")}
    got = {s["__key__"]: s for s in iter_samples(str(out), decode=False)}
    assert sorted(got) == sorted(ref) and len(got) == 2
    for k, s in got.items():
        for m, v in s.items():
            if m == "mp4":  # x264 is not bit-reproducible run to run: compare decoded frames
                a, b = decode_mp4(v).astype(np.int16), decode_mp4(ref[k][m]).astype(np.int16)
                assert a.shape == b.shape and np.abs(a - b).mean() < 2.0
            elif m == "json":  # subject ids enumerate the run's subjects: the batch has more
                assert {**json.loads(v), "subject_id": 0} == {**json.loads(ref[k][m]), "subject_id": 0}
            elif not m.startswith("__"):
                assert v == ref[k][m], (k, m)
