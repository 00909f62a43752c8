"""End-to-end AU training on real CK+ crops through the LightningCLI, ONNX export with parity and loading."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("lightning")
pytest.importorskip("timm")
pytest.importorskip("onnxruntime")
torch.set_num_threads(1)

from mien.cli.train import build_cli, config_path  # noqa: E402
from mien.export.au import ONNX_METADATA_KEY, export_au_onnx, load_au_task  # noqa: E402

CK_CSV = "expressions/ckplus48_facs_labels.csv"


def cli_main(args, run=True):
    return build_cli("au", args, run=run)


def _args(shared_data, root, *extra):
    return ["fit", "--config", "tiny", f"--data.labels.csv={shared_data / CK_CSV}",
            f"--trainer.default_root_dir={root}",
            f"--trainer.logger.init_args.save_dir={root}", "--trainer.max_steps=-1", "--trainer.max_epochs=1",
            "--trainer.limit_train_batches=2", "--trainer.limit_val_batches=2", "--data.batch_size=16", *extra]


@pytest.fixture(scope="module")
def trained(shared_data, tmp_path_factory):
    """Two steps of FixMatch + MIRO + distribution-balanced loss on CK+ (fold 0), unlabelled = CK+ 'happy' folder."""
    root = tmp_path_factory.mktemp("au_run")
    cli = cli_main(_args(shared_data, root, "--model.ssl.kind=fixmatch", "--model.miro.weight=0.1",
                         "--model.loss.kind=db", f"--data.unlabeled.dir={shared_data / 'expressions/ckplus48/happy'}",
                         "--data.unlabeled.max_items=32", "--data.unlabeled.batch_size=8"))
    ckpt = cli.trainer.checkpoint_callback.last_model_path
    return cli, ckpt, root


def test_fit_logs_metrics_and_checkpoint(trained):
    cli, ckpt, _ = trained
    assert cli.trainer.global_step == 2
    m = {k: float(v) for k, v in cli.trainer.callback_metrics.items()}
    for key in ("train/loss", "train/miro", "train/loss_unlabeled", "val/loss", "val/f1_macro", "val/f1_eer_macro",
                "val/ap_macro", "val/auc_macro", "val/icc_macro", "val/mae_macro", "val/auc/AU25"):
        assert key in m and np.isfinite(m[key]), key
    assert cli.model.au_names == cli.datamodule.au_names and len(cli.model.au_names) == 14
    assert cli.model.hparams.image["size"] == 64 and cli.model.hparams.image["grayscale"] is True
    # the split is subject-disjoint
    dm = cli.datamodule
    assert set(dm.full.subjects[dm.train_idx]).isdisjoint(dm.full.subjects[dm.val_idx])
    assert ckpt.endswith(".ckpt")


def test_export_onnx_parity_and_loader(trained, shared_data, tmp_path):
    """The ONNX export matches the trained task on real crops; analysis loads the ONNX file (mien.heads.au) and
    refuses the Lightning checkpoint. Needs mien.heads (the heads branch)."""
    import onnx

    from mien.data.au import prepare_image
    from mien.heads.au import load_au_model
    from mien.models.au.backbone import AUInference

    _, ckpt, _ = trained
    out = tmp_path / "au.onnx"
    rep = export_au_onnx(ckpt, out)
    assert rep.max_abs_diff < 1e-4 and rep.outputs == ["probs", "intensity"]
    meta = {p.key for p in onnx.load(str(out)).metadata_props}
    assert ONNX_METADATA_KEY in meta
    task = load_au_task(ckpt)
    b = load_au_model(out)
    assert task.contract() == b.contract and b.contract["crop"]["scale"] == 1.0
    # real CK+ images as (B, H, W, 3) uint8 RGB crops (48x48 gray replicated)
    import cv2

    paths = sorted((shared_data / "expressions/ckplus48/surprise").glob("*.png"))[:4]
    crops = np.stack([cv2.cvtColor(cv2.imread(str(p)), cv2.COLOR_BGR2RGB) for p in paths])
    x = torch.stack([prepare_image(c, b.contract["image_size"], b.contract["grayscale"]) for c in crops])
    with torch.no_grad():
        pa, ia = (t.numpy() for t in AUInference(task.net)(x))
    nb, pb = b(crops)
    assert nb == b.names == task.au_names and pb.shape == (4, 14) and pb.dtype == np.float32
    assert np.abs(pa - pb).max() < 1e-4
    assert ((pb >= 0) & (pb <= 1)).all()
    ib = b.predict(crops)["intensity"]
    assert np.abs(ia - ib).max() < 1e-4
    with pytest.raises(ValueError):
        b(crops.astype(np.float32))
    with pytest.raises(FileNotFoundError):
        load_au_model(tmp_path / "missing.onnx")
    with pytest.raises(ValueError, match="mien export au"):
        load_au_model(ckpt)  # analysis never loads a Lightning checkpoint
    with pytest.raises(FileNotFoundError):
        load_au_task(tmp_path / "missing.ckpt")


def test_fast_dev_run_faceapi_defixmatch_merged(shared_data, tmp_path):
    """Offline face-api backbone, DeFixMatch, BCE, regression intensity, side-merge link."""
    cli = cli_main(["fit", "--config", "tiny", f"--data.labels.csv={shared_data / CK_CSV}",
                    f"--trainer.default_root_dir={tmp_path}", f"--trainer.logger.init_args.save_dir={tmp_path}",
                    "--trainer.fast_dev_run=1", "--data.batch_size=8", "--model.backbone.name=faceapi",
                    "--model.backbone.pretrained=true", "--model.ssl.kind=defixmatch", "--model.loss.kind=bce",
                    "--model.intensity.kind=regression", "--data.labels.merge_sides=true",
                    f"--data.unlabeled.dir={shared_data / 'expressions/ckplus48/fear'}", "--data.unlabeled.max_items=16",
                    "--data.unlabeled.batch_size=4"])
    assert cli.trainer.global_step == 1
    assert "train/loss_anti" in cli.trainer.callback_metrics
    assert cli.model.au_names[0] == "AU01"


def test_cli_links_and_config_resolution(shared_data):
    cli = cli_main(["--config=tiny", f"--data.labels.csv={shared_data / CK_CSV}",
                    "--data.labels.au_names=[AU01, AU12L, AU12R]", "--data.labels.merge_sides=true",
                    "--data.image.size=48"], run=False)
    assert cli.model.au_names == ["AU01", "AU12"] and cli.model.hparams.image["size"] == 48
    assert cli.model.contract()["image_size"] == 48
    assert config_path("au", "faceflow").is_file()


def test_faceflow_config_parses_and_instantiates(tmp_path):
    """The GPU config builds (ConvNeXt-V2 nano without downloading, on the CPU, no run)."""
    cli = cli_main(["--config", "faceflow", "--model.backbone.pretrained=false", "--trainer.accelerator=cpu",
                    "--trainer.precision=32-true", f"--trainer.default_root_dir={tmp_path}",
                    f"--trainer.logger.init_args.save_dir={tmp_path}"], run=False)
    assert cli.model.hparams.ssl["kind"] == "defixmatch" and cli.model.miro is not None
    assert cli.model.au_names == ["AU1", "AU2", "AU4", "AU5", "AU6", "AU9", "AU12", "AU15", "AU17", "AU20", "AU26"]
    assert cli.model.hparams.image["size"] == 224 and cli.datamodule.labels.occurrence_threshold == 2.0


def test_mien_cli_train_export_and_analyze_with_au_model(trained, shared_data, tmp_path):
    """`mien export au` of a `mien train au` checkpoint, then `mien analyze --au-model` with the ONNX file; its
    values match the trained task on the crops analysis cut; the checkpoint itself is refused by analysis.
    Needs mien.heads (the heads branch)."""
    import cv2

    import mien
    from mien.cli.main import main
    from mien.data.au import prepare_image
    from mien.heads.au import load_au_model
    from mien.models.au.backbone import AUInference

    _, ckpt, _ = trained
    onnx_path = tmp_path / "au.onnx"
    assert main(["export", "au", "--checkpoint", ckpt, "-o", str(onnx_path)]) == 0
    img = shared_data / "samples/0-f15-hao-ph.jpg"
    by_onnx = mien.analyze(img, au_model=str(onnx_path))
    names = by_onnx.meta["au"]["names"]
    task = load_au_task(ckpt)
    assert len(names) == 14 and names == task.au_names
    a = np.array([by_onnx.extra[n][0] for n in names])
    # the task itself on the crop that analysis cut from the same landmarks
    runner = load_au_model(onnx_path)
    rgb = cv2.cvtColor(cv2.imread(str(img)), cv2.COLOR_BGR2RGB)
    crop = runner.crop_faces([rgb], by_onnx.landmarks[:1])[0]
    x = prepare_image(crop, task.image.size, task.image.grayscale)[None]
    with torch.no_grad():
        b = AUInference(task.net)(x)[0][0].numpy()
    assert np.allclose(a, b, atol=1e-4) and ((a >= 0) & (a <= 1)).all()
    assert by_onnx.meta["models"]["au"]["file"] == "au.onnx"
    with pytest.raises(ValueError, match="mien export au"):
        mien.analyze(img, au_model=ckpt)
    out = tmp_path / "cli"
    assert main(["analyze", str(img), "-o", str(out), "--au-model", str(onnx_path), "--format", "openface",
                 "--no-overlay", "--no-plot", "--no-progress"]) == 0
    header = (out / "0-f15-hao-ph.openface.csv").read_text().splitlines()[0]
    assert f"{names[0]}_c" in header
    # tiny.yaml trains an ordinal intensity head: FACS 0-5 columns, OpenFace AUxx_r
    inten = by_onnx.extra[f"{names[0]}_intensity"]
    assert ((inten >= 0) & (inten <= 5)).all()
    assert f"{names[0]}_r" in header
    assert main(["analyze", str(img), "-o", str(out), "--au-model", str(onnx_path), "--au-baseline"]) == 2
