"""Reaction training (mien train reaction-tokenizer / reaction), export, the LR schedule, `mien react` end to end on
a real clip and `mien evaluate reaction`."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("lightning")
pytest.importorskip("webdataset")

from test_react_data import _write_react_tree  # noqa: E402  (the official-layout fixture of tests/test_react_data.py)

FEATURES = ("presence", "attrs", "mfcc")
TRAIN_ARGS = ["--trainer.logger", "false", "--trainer.enable_checkpointing", "true", "--data.window", "40",
              "--data.stride", "20", "--data.val_fraction", "0.0", "--data.batch_size", "6",
              "--trainer.check_val_every_n_epoch", "1000"]


@pytest.fixture(scope="module")
def dyadic_root(tmp_path_factory):
    """Dyadic shards converted from a tiny tree in the official REACT layout (3 dyads × 100 frames)."""
    from mien.pipelines.prepare import PrepareOptions, prepare

    base = tmp_path_factory.mktemp("react")
    (base / "data").mkdir()
    _write_react_tree(base / "data", frames=100)
    out = base / "dyadic"
    prepare([], str(out), PrepareOptions(mode="dyadic", react_root=str(base / "data"), react_split="val",
                                         dyadic_features=FEATURES))
    return out


def _fit(task: str, root, tmp, extra: list[str]):
    from mien.cli.train import build_cli

    n = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return build_cli(task, ["fit", "--config", "tiny", "--data.root", str(root),
                                "--trainer.default_root_dir", str(tmp), *TRAIN_ARGS, *extra])
    finally:
        torch.set_num_threads(n)


@pytest.fixture(scope="module")
def trained(dyadic_root, tmp_path_factory):
    """Tokenizer (40 steps) and transformer (30 steps) trained with the tiny configs and exported."""
    from mien.cli.main import main

    tmp = tmp_path_factory.mktemp("runs")
    dm_batch = None
    tok_cli = _fit("reaction-tokenizer", dyadic_root, tmp / "tok", ["--trainer.max_steps", "40",
                                                                    "--model.schedule.total_steps", "40",
                                                                    "--model.schedule.warmup_steps", "5",
                                                                    "--model.schedule.hold_steps", "10"])
    dm = tok_cli.datamodule
    dm_batch = next(iter(dm.train_dataloader()))
    ckpt = next((tmp / "tok").rglob("last.ckpt"))
    assert main(["export", "reaction", "--checkpoint", str(ckpt), "-o", str(tmp / "tokenizer")]) == 0
    rx_cli = _fit("reaction", dyadic_root, tmp / "rx", ["--model.tokenizer", str(tmp / "tokenizer"),
                                                        "--trainer.max_steps", "30",
                                                        "--model.schedule.total_steps", "30",
                                                        "--model.schedule.warmup_steps", "5",
                                                        "--model.schedule.hold_steps", "10"])
    ckpt = next((tmp / "rx").rglob("last.ckpt"))
    assert main(["export", "reaction", "--checkpoint", str(ckpt), "-o", str(tmp / "model")]) == 0
    return {"tok_cli": tok_cli, "rx_cli": rx_cli, "batch": dm_batch, "dir": tmp, "model": tmp / "model"}


def test_warmup_hold_cosine_schedule_reaches_every_phase():
    from mien.tasks.schedules import WarmupDecaySchedule

    s = WarmupDecaySchedule(0.1, 1.0, 0.0, warmup_steps=10, total_steps=50, decay="cosine", hold_steps=20)
    assert s(0) == pytest.approx(0.1) and s(5) == pytest.approx(0.55)
    assert s(10) == s(29) == 1.0
    assert s(40) == pytest.approx(0.5) and s(50) == 0.0 and s(80) == 0.0
    with pytest.raises(ValueError):
        WarmupDecaySchedule(0, 1, 0, warmup_steps=10, total_steps=20, hold_steps=11)
    # hold 0 is the former schedule
    assert WarmupDecaySchedule(0, 1, 0, 10, 30, decay="cosine")(20) == pytest.approx(0.5)


def test_training_lowers_losses_and_export_parity(trained, torch_one_thread):
    from mien.models.reaction import load_reaction_model, load_reaction_tokenizer

    batch = trained["batch"]
    # tokenizer: the trained one reconstructs better than a fresh one
    tok_task = trained["tok_cli"].model.eval()
    fresh = type(tok_task)(**{k: v for k, v in tok_task.hparams.items()}).eval()
    with torch.no_grad():
        after = tok_task._errors(batch["listener_attrs"])["recon_mse"]
        before = fresh._errors(batch["listener_attrs"])["recon_mse"]
    assert after < 0.9 * before
    tok = load_reaction_tokenizer(trained["dir"] / "tokenizer")
    assert torch.equal(tok.encode(batch["listener_attrs"])[0], tok_task.tokenizer.encode(batch["listener_attrs"])[0])
    meta = json.loads((trained["dir"] / "tokenizer" / "config.json").read_text())
    assert meta["kind"] == "tokenizer"
    # transformer: CRM loss (deterministic) lower than at initialisation; every LR phase reached
    rx = trained["rx_cli"].model.eval()
    init = type(rx)(**{k: v for k, v in rx.hparams.items()}).eval()
    init.model.load_state_dict({k: v for k, v in rx.model.state_dict().items()
                                if k.startswith(("tokenizer.", "speaker_", "observed"))}, strict=False)
    with torch.no_grad():
        assert rx.compute_losses(batch, train=False)["loss_crm"] < init.compute_losses(batch, train=False)["loss_crm"]
    sched = rx._schedule()
    lrs = [sched(k) for k in range(31)]
    assert lrs[0] < lrs[5] == lrs[14] == max(lrs) and lrs[30] < lrs[20] < lrs[15]
    # export → load parity (the Lightning model vs the exported files)
    model = load_reaction_model(trained["model"])
    assert model.speaker_feature_names == trained["rx_cli"].datamodule.feature_names
    assert model.fps == 25.0 and bool(model.observed.all())
    sp = batch["speaker"][:2]
    for online in (False, True):
        assert torch.equal(model.generate(sp, 3, online=online, seed=1), rx.model.generate(sp, 3, online=online, seed=1))


def test_resume_from_checkpoint(trained, dyadic_root, tmp_path):
    ckpt = next((trained["dir"] / "rx").rglob("last.ckpt"))
    cli = _fit("reaction", dyadic_root, tmp_path, ["--model.tokenizer", str(trained["dir"] / "tokenizer"),
                                                   "--trainer.max_steps", "32", "--model.schedule.total_steps", "30",
                                                   "--model.schedule.warmup_steps", "5",
                                                   "--model.schedule.hold_steps", "10", "--ckpt_path", str(ckpt)])
    assert cli.trainer.global_step == 32 and bool(cli.model.stats_ready)


def test_mien_react_end_to_end_on_a_real_clip(trained, shared_data, tmp_path, torch_one_thread):
    import mien
    from mien.cli.main import main

    clip = shared_data / "videos" / "talking" / "face_1.mp4"
    out = tmp_path / "reactions"
    assert main(["react", str(clip), "-o", str(out), "--model", str(trained["model"]), "--n", "3", "--end", "2.0",
                 "--online", "--videos", "1", "--seed", "3", "--temperature-step", "0.2"]) == 0
    res = mien.read_reactions(out / "face_1.reactions.parquet")
    assert res.reactions.shape == (3, 50, 25) and res.fps == 25.0
    assert np.isfinite(res.reactions).all() and len({r.tobytes() for r in res.reactions}) == 3
    assert res.speaker.shape == (50, 25) and np.isnan(res.speaker[:, 15:17]).all()  # mien has no valence/arousal
    df = res.to_pandas()
    assert len(df) == 150 and list(df.columns[:3]) == ["reaction", "frame", "t_sec"] and "AU12" in df.columns
    assert (out / "face_1.reactions.png").stat().st_size > 0
    from mien.io.video import open_source

    src = open_source(str(out / "face_1.reaction0.mp4"))
    frames = list(src)
    assert len(frames) == 50 and frames[0].image.shape[1] == 2 * frames[0].image.shape[0]  # speaker | mesh
    # what the Python API (mien.react, which the command runs) recorded
    assert res.meta["options"]["temperature_step"] == 0.2 and res.meta["options"]["online"] is True
    assert res.meta["speaker_feature_names"][:2] == ["presence", "attrs:AU01"]


def test_mien_react_listener_portrait(trained, shared_data, tmp_path, torch_one_thread):
    """--listener-image: the portrait animated by the first reaction, T frames at the reaction's fps, with audio."""
    import av
    from PIL import Image

    import mien
    from mien.cli.main import main

    clip, portrait = shared_data / "videos" / "talking" / "face_1.mp4", shared_data / "samples" / "single_face.jpg"
    out = tmp_path / "reactions"
    assert main(["react", str(clip), "-o", str(out), "--model", str(trained["model"]), "--n", "2", "--end", "1.0",
                 "--no-plot", "--listener-image", str(portrait), "--listener-gain", "1.5"]) == 0
    res = mien.read_reactions(out / "face_1.reactions.parquet")
    assert res.meta["listener"] == {"image": str(portrait), "model": "warp", "gain": 1.5, "neutral_quantile": 0.1}
    assert not (out / "face_1.reaction1.portrait.mp4").exists()  # --videos 1 (default): the first reaction only
    with av.open(str(out / "face_1.reaction0.portrait.mp4")) as c:
        v = c.streams.video[0]
        frames = [f.to_ndarray(format="rgb24") for f in c.decode(video=0)]
        assert float(v.average_rate) == res.fps == 25.0 and len(c.streams.audio) == 1  # the speaker's audio
    assert len(frames) == len(res) == 25
    w, h = Image.open(portrait).size
    assert frames[0].shape == (h + h % 2, w + w % 2, 3)  # the full portrait, face pasted back


def test_listener_portrait_au12_raises_mouth_corners(shared_data, tmp_path):
    """The AU → edit mapping on hand-made reactions, and its effect measured on the output frames' landmarks."""
    import av

    from mien.metrics.react import REACT_AUS
    from mien.pipelines.react_portrait import ListenerPortrait, reaction_edits
    from mien.pipelines.reenact import FaceCropper

    x = np.zeros((5, 25), np.float32)
    x[:, 7] = [0.2, 0.2, 0.2, 0.2, 1.0]  # AU12: neutral level (10th percentile) 0.2
    x[:, 6] = np.nan  # AU10: no value → skipped
    edits, skipped = reaction_edits(x, ["AU10", "AU12", "AU15"], gain=2.0)
    assert skipped == sorted(set(REACT_AUS) - {"AU12", "AU15"}) and edits[0] == {"AU12": 0.0, "AU15": 0.0}
    assert edits[4]["AU12"] == pytest.approx(1.6)
    with pytest.raises(ValueError, match="T >= 1, 25"):
        reaction_edits(x[:, :15], ["AU12"])

    lp = ListenerPortrait(shared_data / "samples" / "single_face.jpg")
    reaction = np.zeros((3, 25), np.float32)
    reaction[:, 7] = [0.0, 0.0, 1.0]  # low, low, high AU12
    reaction[:, 6] = np.nan
    with pytest.warns(UserWarning, match="1 of 15 AUs not rendered.*AU10"):
        rep = lp.render(reaction, 10.0, tmp_path / "p.mp4")
    assert rep.frames == 3 and rep.fps == 10.0 and not rep.audio and rep.skipped == ["AU10"] and "AU12" in rep.used
    with av.open(str(tmp_path / "p.mp4")) as c:
        frames = [f.to_ndarray(format="rgb24") for f in c.decode(video=0)]
    h, w = frames[0].shape[:2]
    crop = FaceCropper(w, h, 256, static=True)
    try:
        lm = [crop(f).landmarks for f in frames]
    finally:
        crop.close()
    corners, eyes = [61, 291], [33, 263]  # AU12 (lip corner puller) raises the mouth corners toward the eyes
    rise = [lm[k][eyes, 1].mean() - lm[k][corners, 1].mean() for k in range(3)]
    # crop px (S = 256): the warp moves the corners' targets up by ≈ 3.8 px at AU12 = 1, gain 1; measured ≈ 4.5
    assert abs(rise[1] - rise[0]) < 0.3 and rise[2] - rise[0] > 2.0


def test_listener_portrait_with_a_trained_reenactor(shared_data, tiny_reenact_export, tmp_path, torch_one_thread):
    """--listener-model DIR: a reenact export's own AU directions (random-init tiny model, AU12 only) animate it."""
    from mien.pipelines.react_portrait import ListenerPortrait, reaction_edits
    from mien.pipelines.reenact_video import Reenactment

    folder, _ = tiny_reenact_export
    reaction = np.zeros((3, 25), np.float32)
    reaction[:, 7] = [0.0, 0.0, 1.0]
    portrait = shared_data / "samples" / "single_face.jpg"
    lp = ListenerPortrait(portrait, folder)
    with pytest.warns(UserWarning, match="14 of 15 AUs not rendered"):
        rep = lp.render(reaction, 25.0, tmp_path / "n.mp4")
    assert rep.used == ["AU12"] and rep.frames == 3 and (tmp_path / "n.mp4").stat().st_size > 0
    edits, _ = reaction_edits(reaction, lp.reenactor.au_directions)
    a, b, e = Reenactment(portrait, None, None, lp.reenactor, edits=edits)  # the frames before encoding
    assert np.array_equal(a, b) and not np.array_equal(a, e)  # the AU12 direction moved the expression latent
    with pytest.raises(ValueError, match="AU directions"):
        ListenerPortrait(shared_data / "samples" / "single_face.jpg", "copy")


def test_bad_inputs_give_one_line_errors(trained, shared_data, tmp_path, capsys, monkeypatch):
    import mien.pipelines.react as R
    from mien.cli.main import main

    args = ["-o", str(tmp_path / "o"), "--model", str(trained["model"]), "--n", "2", "--videos", "0"]
    # a listener portrait without a face: one line, exit 2, before the speaker is analysed
    monkeypatch.setattr(R, "speaker_inputs", lambda *a, **k: pytest.fail("analysed the speaker before the portrait"))
    assert main(["react", str(shared_data / "samples" / "single_face.mp4"), *args,
                 "--listener-image", str(shared_data / "samples" / "no_face.mp4")]) == 2
    err = capsys.readouterr().err
    assert "no_face.mp4: no face found in the source portrait" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "o").exists()
    monkeypatch.undo()
    assert main(["react", str(shared_data / "samples" / "no_face.mp4"), *args]) == 2
    assert "no_face.mp4: no face found in the speaker video" in capsys.readouterr().err
    assert main(["react", str(tmp_path / "missing.mp4"), *args]) == 2
    assert main(["react", str(shared_data / "samples" / "single_face.mp4"), "-o", str(tmp_path / "o"),
                 "--model", str(tmp_path), "--n", "2"]) == 2
    assert "config.json missing" in capsys.readouterr().err
    assert main(["react", str(shared_data / "samples" / "single_face.mp4"), *args[:-2], "--n", "0"]) == 2
    assert main(["export", "reaction", "--checkpoint", str(tmp_path / "none.ckpt"), "-o", str(tmp_path / "x")]) == 2


def test_evaluate_reaction_table(trained, dyadic_root, tmp_path, capsys):
    from mien.cli.main import main

    sessions = json.loads((dyadic_root / "manifest.json").read_text())["dyads"]
    out = tmp_path / "report"
    assert main(["evaluate", "reaction", "--model", str(trained["model"]), "--data", str(dyadic_root),
                 "--val-sessions", sessions[0], "--window", "60", "-n", "3", "-o", str(out)]) == 0
    rep = json.loads((tmp_path / "report.json").read_text())
    rows = rep["rows"]
    assert set(rows) == {"model (offline)", "model (online)", "random listener", "mirror",
                         "nearest neighbour (speaker features)", "appropriate listener (oracle)"}
    assert rep["n_heldout"] == 2 and rep["n_train"] == 4 and rep["R"] == 3
    for modes in rows.values():
        assert set(modes) == {"official", "corrected"}
        assert all(math.isfinite(v) for v in modes["official"].values())
        # official FRCorr is a sum over the R reactions, corrected a mean
        assert modes["official"]["FRCorr"] == pytest.approx(3 * modes["corrected"]["FRCorr"], abs=1e-9)
    assert rows["mirror"]["official"]["FRDiv"] == 0.0  # R identical copies
    assert "| model (offline) |" in (tmp_path / "report.md").read_text() and "FRCorr" in capsys.readouterr().out


def test_datamodule_split_streaming_and_exclusion(dyadic_root):
    from mien.tasks.reaction import ReactionDataModule

    sessions = json.loads((dyadic_root / "manifest.json").read_text())["dyads"]
    for in_memory in (True, False):
        dm = ReactionDataModule(str(dyadic_root), window=40, stride=20, val_sessions=[sessions[0]],
                                exclude_sessions=[sessions[1]], batch_size=4, in_memory=in_memory)
        assert len(dm.feature_names) == 1 + 25 + 13 and dm.fps == 25.0 and dm.appropriateness.shape == (6, 6)
        dm.setup("fit")
        train = [b for b in dm.train_dataloader()]
        val = [b for b in dm.val_dataloader()]
        assert {s for b in train for s in b["session"]} == {sessions[2]}
        assert {s for b in val for s in b["session"]} == {sessions[0]}
        assert sum(len(b["index"]) for b in train) == 8 and train[0]["speaker"].shape[1:] == (40, 39)
    with pytest.warns(UserWarning, match="shorter than 200 frames skipped"):
        dm = ReactionDataModule(str(dyadic_root), window=200, val_fraction=0.0)
        with pytest.raises(ValueError, match="no training window"):
            dm.setup("fit")


def test_react_on_frame_steps_stop_and_cancel(tiny_reaction_export, shared_data, tmp_path):
    """``react_to_files``'s ``on_frame(frame, step)``: once per analysed speaker frame and per rendered frame of
    each video, in step order over one time window; True ends that video at that frame; an exception (a
    cancelled job) propagates and leaves no half-written file."""
    import av

    from mien.pipelines.react import ReactOptions, react_to_files

    clip = shared_data / "samples" / "single_face.mp4"
    calls = []

    def on_frame(frame, step):
        calls.append((step.name, step.index, step.count, frame.index, frame.t_sec))
        return step.name == "video0" and frame.index == 4

    opts = ReactOptions(n=2, videos=1, end=1.0, listener_image=str(shared_data / "samples" / "single_face.jpg"))
    files = react_to_files(clip, tmp_path / "a", tiny_reaction_export, opts, on_frame=on_frame)
    names = [c[0] for c in calls]
    assert names == sorted(names, key=["speaker", "video0", "portrait0"].index)  # steps in order
    assert {(c[0], c[1], c[2]) for c in calls} == {("speaker", 0, 3), ("video0", 1, 3), ("portrait0", 2, 3)}
    speaker = [c for c in calls if c[0] == "speaker"]
    assert [c[3] for c in speaker] == list(range(31))  # 0 … 1 s (inclusive) at 30 fps
    portrait = [c for c in calls if c[0] == "portrait0"]
    with av.open(str(files["portrait0"])) as c:
        assert len(portrait) == sum(1 for _ in c.decode(video=0)) >= 20
    assert all(0 <= c[4] <= 1.0 + 1e-6 for c in calls)  # one time window
    with av.open(str(files["video0"])) as c:
        assert sum(1 for _ in c.decode(video=0)) == 5  # True ended it after frame 4

    class Stop(Exception):
        pass

    def cancel(frame, step):
        if step.name == "video0" and frame.index == 2:
            raise Stop

    with pytest.raises(Stop):
        react_to_files(clip, tmp_path / "b", tiny_reaction_export, ReactOptions(n=2, videos=1, end=1.0),
                       on_frame=cancel)
    assert sorted(p.name for p in (tmp_path / "b").iterdir()) == ["single_face.reactions.parquet",
                                                                   "single_face.reactions.png"]
