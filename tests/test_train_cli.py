"""``mien train tokenizer fit`` through the packaged config, then ``mien export tokenizer``."""

import pytest

pytest.importorskip("lightning")
pytest.importorskip("timm")


def test_train_tokenizer_tiny_then_export(tmp_path, shared_data, monkeypatch):
    import torch

    from mien.cli.main import main
    from mien.models.tokenizer import load_pretrained

    torch.set_num_threads(1)
    monkeypatch.chdir(tmp_path)
    video = shared_data / "videos/talking/face_1.mp4"
    rc = main(["train", "tokenizer", "fit", "--config", "tiny", f"--data.init_args.videos=[{video}]",
               "--trainer.max_steps=3", f"--trainer.default_root_dir={tmp_path}",
               f"--trainer.logger.init_args.save_dir={tmp_path / 'runs'}"])
    assert rc == 0
    (ckpt,) = list(tmp_path.rglob("*.ckpt"))
    assert list((tmp_path / "runs").rglob("events.out.tfevents.*"))  # TensorBoard log written
    assert main(["export", "tokenizer", "--checkpoint", str(ckpt), "-o", str(tmp_path / "exported")]) == 0
    model = load_pretrained(tmp_path / "exported")
    assert sum(p.numel() for p in model.parameters()) > 0
    assert main(["export", "tokenizer", "--checkpoint", str(tmp_path / "nope.ckpt"), "-o", "x"]) == 2


def test_train_tokenizer_on_prepared_shards(tmp_path, shared_data, monkeypatch):
    """`mien prepare` shards feed the tokenizer through mien.data.ClipDataModule (crops resized to the model)."""
    import torch

    from mien.cli.main import main

    torch.set_num_threads(1)
    monkeypatch.chdir(tmp_path)
    videos = [shared_data / f"videos/talking/face_{i}.mp4" for i in (1, 2, 3)]
    assert main(["prepare", *map(str, videos), "-o", str(tmp_path / "ds"), "--clip-seconds", "0.8", "--fps", "10",
                 "--crop-size", "96", "--mode", "all", "--stride", "1.6", "--workers", "1"]) == 0
    rc = main(["train", "tokenizer", "fit", "--config", "tiny", "--data", "mien.data.datamodule.ClipDataModule",
               f"--data.init_args.root={tmp_path / 'ds'}", "--data.init_args.batch_size=2",
               "--data.init_args.num_workers=0", "--data.init_args.val_fraction=0.34",
               "--data.init_args.val_time_fraction=0.25", "--trainer.max_steps=3", "--trainer.limit_train_batches=2",
               "--trainer.limit_val_batches=1",
               f"--trainer.default_root_dir={tmp_path}", f"--trainer.logger.init_args.save_dir={tmp_path / 'runs'}"])
    assert rc == 0
    assert len(list(tmp_path.rglob("*.ckpt"))) == 1
    # validation on unseen subjects and on held-out time segments of the training subjects, logged apart
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from mien.data.datamodule import ClipDataModule
    from mien.data.reader import open_dataset

    acc = EventAccumulator(str(next((tmp_path / "runs").rglob("events.out.tfevents.*"))))
    acc.Reload()
    scalars = set(acc.Tags()["scalars"])
    assert {"val_unseen_subjects/loss_recon", "val_heldout_time/loss_recon"} <= scalars, scalars
    dm = ClipDataModule(str(tmp_path / "ds"), val_fraction=0.34, val_time_fraction=0.25, num_workers=0)
    dm.setup()
    idx = open_dataset(str(tmp_path / "ds")).index
    held = idx[idx["key"].isin(dm.heldout_keys)]
    assert len(held) > 0 and dm.val_set_names == ["unseen_subjects", "heldout_time"]
    val_subject = set(idx.loc[idx["shard"].isin({u.rsplit("/", 1)[-1] for u in dm.val_urls}), "subject_id"])
    assert not set(held["subject_id"]) & val_subject  # time segments come from training subjects
    for vk, rows in idx[~idx["subject_id"].isin(val_subject)].groupby("video_key"):
        h = rows["key"].isin(dm.heldout_keys)
        assert h.any() and (~h).any() and rows.loc[h, "start_sec"].min() > rows.loc[~h, "start_sec"].max(), vk
    train_keys = [b for batch in dm.train_dataloader() for b in batch["__key__"]]
    assert train_keys and not set(train_keys) & dm.heldout_keys
    assert sorted(k for batch in dm.val_dataloader()[1] for k in batch["__key__"]) == sorted(dm.heldout_keys)
    # what is built from training data after training (exemplar banks, batch-norm statistics) reads the same clips
    from mien.data.datamodule import training_loader

    loader, urls = training_loader(str(tmp_path / "ds"), val_fraction=0.34, val_time_fraction=0.25, batch_size=2)
    assert urls == dm.train_urls and sorted(k for batch in loader for k in batch["__key__"]) == sorted(train_keys)


@pytest.mark.slow
@pytest.mark.parametrize("data", ["videos", "shards"])
def test_ddp_two_cpu_processes(tmp_path, shared_data, data):
    """Lightning's own DDP (2 CPU processes, gloo): the launcher re-runs `python -m mien train …` for rank 1.
    With shards, every rank must get the same number of batches (else the ranks deadlock)."""
    import os
    import subprocess
    import sys

    if data == "videos":
        videos = ",".join(str(shared_data / f"videos/talking/face_{i}.mp4") for i in (1, 2))
        data_args = [f"--data.init_args.videos=[{videos}]"]
    else:
        from mien.cli.main import main

        videos = [str(shared_data / f"videos/talking/face_{i}.mp4") for i in (1, 2, 3)]
        assert main(["prepare", *videos, "-o", str(tmp_path / "ds"), "--clip-seconds", "0.8", "--fps", "10",
                     "--crop-size", "64", "--clips-per-video", "3", "--workers", "1"]) == 0
        data_args = ["--data", "mien.data.datamodule.ClipDataModule", f"--data.init_args.root={tmp_path / 'ds'}",
                     "--data.init_args.batch_size=1", "--data.init_args.num_workers=0",
                     "--data.init_args.val_fraction=0.34"]
    cmd = [sys.executable, "-m", "mien", "train", "tokenizer", "fit", "--config", "tiny", *data_args,
           "--trainer.max_steps=3", "--trainer.devices=2", "--trainer.strategy=ddp",
           f"--trainer.default_root_dir={tmp_path}", f"--trainer.logger.init_args.save_dir={tmp_path / 'runs'}"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=400, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "MEMBER: 2/2" in proc.stderr + proc.stdout  # the second rank really joined
    assert len(list(tmp_path.rglob("*.ckpt"))) == 1


def test_tensorboard_gets_token_histograms_and_reconstruction_grids(tmp_path, shared_data, monkeypatch):
    import torch
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from mien.cli.main import main

    torch.set_num_threads(1)
    monkeypatch.chdir(tmp_path)
    v1, v2 = shared_data / "videos/talking/face_1.mp4", shared_data / "videos/talking/face_2.mp4"
    assert main(["train", "tokenizer", "fit", "--config", "tiny", f"--data.init_args.videos=[{v1}, {v2}]",
                 "--data.init_args.val_videos=[1]", "--trainer.max_steps=2", "--trainer.val_check_interval=1",
                 f"--trainer.default_root_dir={tmp_path}",
                 f"--trainer.logger.init_args.save_dir={tmp_path / 'runs'}"]) == 0
    (events,) = list((tmp_path / "runs").rglob("events.out.tfevents.*"))
    acc = EventAccumulator(str(events), size_guidance={"histograms": 0, "images": 0})
    acc.Reload()
    assert "val/token_cosine_within_clip" in acc.Tags()["histograms"]
    assert "val/input_vs_reconstruction" in acc.Tags()["images"]
