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
