"""The feature-vector path of the AU trainer: ``AUFeaturesTask`` + ``AUDataModule(input="features")``
on real CK+ frames (a 15-subject subset), the default-format export, and ``scripts/train_default_au.py``, which
produces the shipped default AU model with that trainer."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("lightning")
torch.set_num_threads(1)

from mien.cli.train import build_cli, config_path  # noqa: E402
from mien.export.au import export_au_head  # noqa: E402
from mien.tasks import au as T  # noqa: E402
from mien.tasks.au.losses import balanced_pos_weight, bce_loss  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
CK_CSV = "expressions/ckplus48_facs_labels.csv"
AUS = ["AU01", "AU04", "AU12", "AU25"]


def _load_script():
    spec = importlib.util.spec_from_file_location("train_default_au", REPO / "scripts" / "train_default_au.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.fixture(scope="module")
def ck_subset(shared_data, tmp_path_factory):
    """Labels of the 15 CK+ subjects of the script's ``--fast`` mode (a CSV in tmp, images read in place) and a
    feature cache in tmp shared by the tests of this module (CK+ derivatives never go into the repository)."""
    root = tmp_path_factory.mktemp("au_features")
    csv = _load_script().subset_csv(shared_data, 15, 0, root / "labels.csv")
    return csv, root / "features.npz", root


def cli_main(args, run=True):
    return build_cli("au", args, run=run)


def _fit_args(shared_data, csv, cache, root, *extra):
    return ["fit", "--config", "default", f"--data.labels.csv={csv}",
            f"--data.labels.crops_dir={shared_data / 'expressions'}", f"--data.features.cache={cache}",
            f"--data.labels.au_names=[{', '.join(AUS)}]", "--data.split.n_folds=3", "--data.split.fold=0",
            f"--trainer.default_root_dir={root}", f"--trainer.logger.init_args.save_dir={root}",
            "--trainer.max_epochs=3", "--trainer.check_val_every_n_epoch=3", *extra]


@pytest.fixture(scope="module")
def trained(shared_data, ck_subset):
    csv, cache, root = ck_subset
    return cli_main(_fit_args(shared_data, csv, cache, root / "fit"))


def test_features_fit_on_real_frames(trained):
    cli = trained
    dm, task = cli.datamodule, cli.model
    assert cli.trainer.global_step == 3  # full batch: one step per epoch
    m = {k: float(v) for k, v in cli.trainer.callback_metrics.items()}
    for key in ("train/loss", "val/loss", "val/f1_macro", "val/f1_eer_macro", "val/ap_macro", "val/auc_macro",
                "val/auc/AU25"):
        assert key in m and np.isfinite(m[key]), key
    assert isinstance(task, T.AUFeaturesTask) and task.au_names == AUS and task.contract()["input"] == "features"
    # subject-disjoint fold; every training frame also appears mirrored, validation frames never do
    assert set(dm.full.subjects[dm.train_idx]).isdisjoint(dm.full.subjects[dm.val_idx])
    assert len(dm.train_set) == 2 * len(dm.train_idx) and len(dm.val_set) == len(dm.val_idx)
    assert dm.full.feature_dim == 1660 and torch.isfinite(dm.full.features).all()
    assert not torch.equal(dm.full.features, dm.full.features_mirrored)
    # the script's recipe: standardisation on the training rows, pos_weight = #neg/#pos clamped to [1, 20]
    mean, std = dm.feature_stats()
    np.testing.assert_allclose(task.net.feature_mean.numpy(), mean, rtol=1e-6)
    pos, neg = dm.class_counts()
    assert pos.sum() > 0 and (pos + neg == len(dm.train_set)).all()
    np.testing.assert_allclose(task.pos_weight.numpy(), np.clip(neg / np.maximum(pos, 1), 1, 20), rtol=1e-6)
    assert Path(cli.trainer.checkpoint_callback.last_model_path).is_file()


def test_exported_head_matches_task_and_checkpoint(trained, tmp_path):
    """export_au_head writes the shipped default's format; loaded without Lightning it gives the task's
    probabilities, from the live task and from its checkpoint (also through `mien export au -o DIR`)."""
    from mien.models.au import load_au_head, predict_au

    cli = trained
    x = cli.datamodule.full.features
    task = cli.model.eval()
    with torch.no_grad():
        ref = torch.sigmoid(task(x)["occ"]).numpy()
    cfg = export_au_head(task, tmp_path / "a", extra={"name": "test"})
    assert cfg["au_names"] == AUS and cfg["in_features"] == 1660 and cfg["name"] == "test"
    assert json.loads((tmp_path / "a" / "config.json").read_text())["thresholds"] == [0.5] * 4
    head = load_au_head(tmp_path / "a")
    np.testing.assert_allclose(predict_au(x, head), ref, atol=1e-6)
    ckpt = cli.trainer.checkpoint_callback.last_model_path
    export_au_head(ckpt, tmp_path / "b")
    np.testing.assert_allclose(predict_au(x, load_au_head(tmp_path / "b")), ref, atol=1e-6)
    from mien.cli.main import main

    assert main(["export", "au", "--checkpoint", ckpt, "-o", str(tmp_path / "c")]) == 0
    np.testing.assert_allclose(predict_au(x, load_au_head(tmp_path / "c")), ref, atol=1e-6)
    assert main(["export", "au", "--checkpoint", ckpt, "-o", str(tmp_path / "c.onnx")]) == 2  # a folder, not ONNX


def test_features_option_errors(shared_data, ck_subset, tmp_path):
    from mien.pipelines.au_features import au_image_features

    # the features task has no image options (augmentation, semi-supervision, MIRO, intensity head)
    for bad in ({"augment": True}, {"ssl": {"kind": "fixmatch"}}, {"miro": {"weight": 0.1}},
                {"intensity": {"kind": "ordinal"}}):
        with pytest.raises(TypeError):
            T.AUFeaturesTask(AUS, **bad)
    with pytest.raises(ValueError, match="pos_weight"):
        T.AUFeaturesTask(AUS, loss=T.LossConfig(kind="focal", pos_weight="balanced"))
    with pytest.raises(ValueError, match="unlabelled"):
        T.AUDataModule(T.LabelSource(csv="x.csv", au_names=AUS), input="features",
                       unlabeled=T.UnlabeledSource(dir=str(tmp_path)))
    with pytest.raises(ValueError, match="inside"):  # per-image CK+ features must not land in the repository
        au_image_features([], cache=REPO / "features.npz")
    # an image datamodule cannot feed a features model
    csv, cache, root = ck_subset
    with pytest.raises(ValueError, match="feature batches"):
        cli_main(_fit_args(shared_data, csv, cache, tmp_path, "--data.input=image", "--trainer.fast_dev_run=1"))


def test_bce_pos_weight_matches_torch():
    g = torch.Generator().manual_seed(0)
    z, t = torch.randn(8, 3, generator=g), (torch.rand(8, 3, generator=g) > 0.7).float()
    pw = balanced_pos_weight(t.sum(0).numpy(), (1 - t).sum(0).numpy(), cap=20.0)
    assert ((pw >= 1) & (pw <= 20)).all()
    ref = torch.nn.BCEWithLogitsLoss(pos_weight=pw)(z, t)
    assert torch.allclose(bce_loss(z, t, torch.ones_like(t), pw), ref, atol=1e-7)


def test_training_script_fast_mode(shared_data, ck_subset, tmp_path):
    """The script drives the trainer per fold and for the refit, and writes loadable default-format assets."""
    from safetensors.torch import load_file

    from mien.models.au import load_au_head
    from mien.models.au.head import AUHead

    _, cache, _ = ck_subset
    summary = _load_script().main(["--fast", "--data", str(shared_data), "--out", str(tmp_path),
                                   "--cache", str(cache)])
    rows = summary["rows"]
    assert len(rows) >= 5 and summary["folds"] == 3 and len(summary["per_fold_trainer_val"]) == 3
    for r in rows:
        assert r["frames"] > 0
        for key in ("f1_05", "f1_eer", "auc", "ap"):
            assert np.isfinite(r[key]) and 0 <= r[key] <= 1, (r["au"], key, r[key])
    cfg = json.loads((tmp_path / "config.json").read_text())
    assert cfg["au_names"] and set(cfg["au_names"]) <= {r["au"] for r in rows}
    assert cfg["trainer"]["task"] == "mien.tasks.au.AUFeaturesTask"
    assert len(cfg["eer_thresholds"]) == len(cfg["au_names"])
    head = AUHead(cfg["in_features"], cfg["au_names"], hidden=cfg["hidden"])
    head.load_state_dict(load_file(str(tmp_path / "au_default.safetensors")))
    assert head(torch.zeros(1, cfg["in_features"])).shape == (1, len(cfg["au_names"]))
    assert load_au_head(tmp_path).au_names == cfg["au_names"]


def test_shipped_default_model_was_made_by_the_trainer():
    from mien.models.au import default_config

    cfg = default_config()
    assert cfg["trainer"]["task"] == "mien.tasks.au.AUTask" and cfg["trainer"]["backbone"] == "features"
    assert "AUTask" in cfg["cv_summary"]["trainer"]
    # the packaged config reproduces the shipped recipe
    import yaml

    rec = yaml.safe_load(config_path("au", "default").read_text())
    assert rec["data"]["labels"]["au_names"] == cfg["au_names"] and rec["data"]["split"]["fold"] is None
    model = rec["model"]["init_args"]
    assert rec["model"]["class_path"] == "mien.tasks.au.AUFeaturesTask"
    assert model["hidden"] == cfg["hidden"] and model["dropout"] == cfg["dropout"]
    assert rec["trainer"]["max_epochs"] == cfg["hyperparameters"]["epochs"]
