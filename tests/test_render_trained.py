"""End to end: ``mien train tokenizer fit`` (tiny, 3 steps) → ``mien export tokenizer`` → ``mien render`` /
``mien tokens plot`` / :class:`~mien.heads.tokens.TokenExtractor` on the exported folder."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("lightning")
pytest.importorskip("timm")

from mien.cli.main import main as cli  # noqa: E402

pytestmark = [pytest.mark.filterwarnings("ignore:Found .* module\\(s\\) in eval mode"),
              pytest.mark.filterwarnings("ignore:You defined a `validation_step` but have no `val_dataloader`"),
              pytest.mark.filterwarnings("ignore:Total length of `list` across ranks is zero"),
              pytest.mark.filterwarnings("ignore:LightningCLI's args parameter is intended")]
VIDEOS = ("videos/talking/Input__00010.mp4", "videos/talking/Input__00002.mp4")  # subjects 0 and 1


def test_trained_export_renders(tmp_path, shared_data, monkeypatch):
    import av

    from mien.heads.tokens import TokenExtractor
    from mien.pipelines.tokens import iter_face_crops

    torch.set_num_threads(1)
    monkeypatch.chdir(tmp_path)
    videos = ",".join(str(shared_data / v) for v in VIDEOS)
    assert cli(["train", "tokenizer", "fit", "--config", "tiny", f"--data.init_args.videos=[{videos}]",
                "--trainer.max_steps=3", f"--trainer.default_root_dir={tmp_path}",
                f"--trainer.logger.init_args.save_dir={tmp_path / 'runs'}"]) == 0
    (ckpt,) = list(tmp_path.rglob("*.ckpt"))
    export = tmp_path / "exported"
    assert cli(["export", "tokenizer", "--checkpoint", str(ckpt), "-o", str(export)]) == 0

    video = str(shared_data / VIDEOS[0])
    assert cli(["render", "swap", video, "--tokenizer", str(export), "--subject", "0", "--target-subject", "1",
                "-o", "swap.mp4", "--end", "0.5"]) == 0
    with av.open("swap.mp4") as c:
        s = c.streams.video[0]
        n = sum(1 for _ in c.decode(s))
        assert (s.width, s.height) == (128, 64)
    ex = TokenExtractor(export)
    crops = np.stack([ff.crop for ff in iter_face_crops(video, ex, end=0.5)])
    assert n == len(crops)
    z = ex(crops)
    assert z.shape == (n, 32)
    np.testing.assert_allclose(np.linalg.norm(z, axis=1), 1.0, atol=1e-5)
    _, own = ex.reconstruct(crops)
    _, other = ex.reconstruct(crops, target_subject=1)
    assert np.abs(own.astype(int) - other).mean() > 0  # the subject embedding changes the rendered face
    assert cli(["tokens", "plot", video, "--tokenizer", str(export), "-o", "plot.png", "--end", "0.5",
                "--reference-frame", "3"]) == 0
    assert (tmp_path / "plot.png").stat().st_size > 10_000
