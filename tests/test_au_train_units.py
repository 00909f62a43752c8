"""Unit tests of AU training parts: losses, FixMatch masking, MIRO, labels, splits, datasets, backbones."""

from __future__ import annotations

import math

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("lightning")
pytest.importorskip("timm")
torch.set_num_threads(1)

from mien.data import au as D  # noqa: E402
from mien.data.labels import facs as F  # noqa: E402
from mien.tasks import au as T  # noqa: E402
from mien.tasks.au import augment as A  # noqa: E402
from mien.tasks.au import losses as L  # noqa: E402

CK_CSV = "expressions/ckplus48_facs_labels.csv"


# ---------------------------------------------------------------------------------------------- losses
def test_focal_gamma0_equals_bce_and_hand_values():
    g = torch.Generator().manual_seed(0)
    z = torch.randn(6, 4, generator=g)
    t = (torch.rand(6, 4, generator=g) > 0.5).float()
    assert torch.allclose(L.sigmoid_focal_loss(z, t, alpha=None, gamma=0.0), L.bce_loss(z, t), atol=1e-7)
    # hand-computed: logit 0 -> p = 0.5; CE = log 2
    z0, t1 = torch.zeros(1, 1), torch.ones(1, 1)
    assert L.bce_loss(z0, t1).item() == pytest.approx(math.log(2), rel=1e-6)
    assert L.sigmoid_focal_loss(z0, t1, alpha=0.25, gamma=2.0).item() == pytest.approx(0.25 * 0.25 * math.log(2), rel=1e-6)
    # negative label with alpha 0.25 -> weight 0.75
    assert L.sigmoid_focal_loss(z0, 0 * t1, alpha=0.25, gamma=2.0).item() == pytest.approx(0.75 * 0.25 * math.log(2), rel=1e-6)


def test_masked_entries_do_not_count():
    z = torch.tensor([[0.0, 100.0]])
    t = torch.tensor([[1.0, 0.0]])  # second entry is hugely wrong but masked
    m = torch.tensor([[1.0, 0.0]])
    assert L.bce_loss(z, t, m).item() == pytest.approx(math.log(2), rel=1e-6)
    assert L.sigmoid_focal_loss(z, t, m, alpha=None, gamma=0).item() == pytest.approx(math.log(2), rel=1e-6)


def test_distribution_balanced_loss_finite_and_reweights_rare():
    pos, neg = np.array([90, 10]), np.array([10, 90])  # class 0 common, class 1 rare
    db = L.DistributionBalancedLoss(pos, neg)
    t = torch.tensor([[1.0, 1.0], [1.0, 0.0], [0.0, 0.0]])
    w = db.weights(t)
    assert torch.isfinite(w).all()
    assert w[0, 1] > w[0, 0]  # a sample with both: the rare class weighs more
    # r = (1/n_k) / sum_j(1/n_j); hand value for sample 0, class 1
    r = (1 / 10) / (1 / 90 + 1 / 10)
    assert w[0, 1].item() == pytest.approx(0.1 + 1 / (1 + math.exp(-10 * (r - 0.2))), rel=1e-5)
    z = torch.randn(3, 2, requires_grad=True)
    loss = db(z, t, torch.tensor([[1.0, 1.0], [1.0, 0.0], [1.0, 1.0]]))
    assert loss.ndim == 0 and torch.isfinite(loss)
    loss.backward()
    assert z.grad[1, 1] == 0  # masked
    # extreme logits stay finite
    assert torch.isfinite(db(torch.tensor([[80.0, -80.0]]), torch.tensor([[0.0, 1.0]])))


def test_ordinal_targets_and_intensity_normalisation():
    it = torch.tensor([[0.0, 0.2, 0.6, 1.0]])
    got = L.ordinal_targets(it, 5)[0]
    want = torch.tensor([[0, 0, 0, 0, 0], [1, 0, 0, 0, 0], [1, 1, 1, 0, 0], [1, 1, 1, 1, 1]], dtype=torch.float32)
    assert torch.equal(got, want)
    n = F.normalize_intensity([0, 5, 2.5, np.nan])
    assert np.allclose(n[:3], [0, 1, 0.5]) and np.isnan(n[3]) and n.dtype == np.float32
    with pytest.raises(ValueError):
        F.normalize_intensity([6.0])
    assert F.parse_facs_codes("9:4 17:2 25:0") == {9: 4, 17: 2, 25: 0}
    with pytest.raises(ValueError):
        F.parse_facs_codes("x:1")


# ---------------------------------------------------------------------------------------------- FixMatch
def test_fixmatch_masking_on_constructed_logits():
    cut = math.log(0.95 / 0.05)  # sigmoid(cut) = 0.95
    z = torch.tensor([[4.0, -4.0, 0.5, -0.1, cut + 1e-3, -cut - 1e-3, cut - 0.05]])
    pseudo, mask = L.fixmatch_pseudo_labels(z, 0.95)
    assert pseudo.tolist() == [[1, 0, 1, 0, 1, 0, 1]]
    assert mask.tolist() == [[1, 1, 0, 0, 1, 1, 0]]
    strong = torch.zeros_like(z, requires_grad=True)
    loss = L.fixmatch_unlabeled_loss(strong, z, 0.95)
    assert loss.item() == pytest.approx(4 * math.log(2) / 7, rel=1e-6)  # mean over all 7 entries
    loss.backward()
    assert (strong.grad[0, [2, 3, 6]] == 0).all() and (strong.grad[0, [0, 1, 4, 5]] != 0).all()
    # nothing confident -> zero loss; the weak logits get no gradient
    weak = torch.zeros(2, 3, requires_grad=True)
    assert L.fixmatch_unlabeled_loss(torch.randn(2, 3), weak, 0.95).item() == 0.0
    assert L.fixmatch_pseudo_labels(weak)[0].requires_grad is False


def test_augmentations_shapes_and_ranges():
    g = torch.Generator().manual_seed(0)
    x = torch.rand(4, 3, 32, 32, generator=g)
    w = A.weak_augment(x, generator=g)
    s = A.strong_augment(w, generator=g)
    assert w.shape == s.shape == x.shape
    assert float(s.min()) >= 0 and float(s.max()) <= 1
    assert not torch.equal(s, w)


# ---------------------------------------------------------------------------------------------- MIRO
def test_miro_finite_scalar_with_gradients():
    miro = L.MIRORegularizer([8, 4], init_var=0.1)
    z = [torch.randn(5, 8, requires_grad=True), torch.randn(5, 4, requires_grad=True)]
    z0 = [torch.randn(5, 8), torch.randn(5, 4)]
    reg = miro(z, z0)
    assert reg.ndim == 0 and torch.isfinite(reg)
    reg.backward()
    assert all(t.grad is not None and t.grad.abs().sum() > 0 for t in z)
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in miro.parameters())
    # identical features: reg = sum_levels log(var) / 2 with var = 0.1
    same = miro([t.detach() for t in z0], z0)
    assert same.item() == pytest.approx(2 * 0.5 * math.log(0.1), rel=1e-4)
    with pytest.raises(ValueError):
        miro(z[:1], z0[:1])


# ---------------------------------------------------------------------------------------------- data
def test_ckplus_labels_and_intensity(shared_data):
    ds = D.CKPlusAUDataset(shared_data / CK_CSV, ["AU09", "AU17", "AU25"], image_size=32)
    assert len(ds) == 729 and ds.au_names == ["AU09", "AU17", "AU25"]
    # first row: "9:4 17:2" -> AU09 4/5, AU17 2/5, AU25 absent
    assert np.allclose(ds.inten[0], [0.8, 0.4, 0.0]) and np.array_equal(ds.occ[0], [1, 1, 0])
    item = ds[0]
    assert item["image"].shape == (3, 32, 32) and item["image"].dtype == torch.float32
    assert 0 <= float(item["image"].min()) and float(item["image"].max()) <= 1
    # code 0 ("present, intensity not coded") is masked for intensity but counts as present
    r = int(np.nonzero(ds.frame["facs_codes"].str.contains(r"(?:^| )25:0"))[0][0])
    assert ds.occ[r, 2] == 1 and np.isnan(ds.inten[r, 2]) and ds[r]["int_mask"][2] == 0 and ds[r]["occ_mask"][2] == 1
    fin = ds.inten[np.isfinite(ds.inten)]
    assert fin.min() >= 0 and fin.max() <= 1
    pos, neg = ds.class_counts()
    assert (pos + neg == 729).all() and pos[2] == 447


def test_subject_kfold_disjoint_covering(shared_data):
    import pandas as pd

    subjects = pd.read_csv(shared_data / CK_CSV)["subject"].to_numpy()
    folds = D.subject_kfold(subjects, 5, seed=0)
    seen = []
    for tr, va in folds:
        assert set(subjects[tr]).isdisjoint(subjects[va])
        assert len(tr) + len(va) == len(subjects)
        seen.extend(sorted(set(subjects[va])))
    assert sorted(seen) == sorted(set(subjects))  # every subject in exactly one validation fold
    sizes = [len(va) for _, va in folds]
    assert max(sizes) - min(sizes) <= 12
    with pytest.raises(ValueError):
        D.subject_kfold(["a", "b"], 3)


def test_sided_merging():
    names, groups = F.sided_groups(["AU01", "AU12L", "AU12R", "AU14_L", "AU14_R", "L2", "R2"])
    assert names == ["AU01", "AU12", "AU14", "AU02"]
    assert groups == [[0], [1, 2], [3, 4], [5, 6]]
    x = np.array([[0, 1, 0, np.nan, np.nan, 0, 0]], np.float32)
    m = F.merge_sided(x, groups)
    assert m[0, 0] == 0 and m[0, 1] == 1 and np.isnan(m[0, 2]) and m[0, 3] == 0
    assert torch.equal(F.merge_sided(torch.tensor([[0.2, 0.9, 0.1]]), [[0], [1, 2]]), torch.tensor([[0.2, 0.9]]))


def test_disfa_style_csv_normalised(shared_data, tmp_path):
    import pandas as pd

    ck = pd.read_csv(shared_data / CK_CSV).head(6)
    df = pd.DataFrame({"AU1": [0, 1, 2, 5, 3, np.nan], "AU12L": [0, 0, 4, 0, 0, 0], "AU12R": [0, 2, 0, 0, 0, 0],
                       "filename": ck["image"]})
    df.to_csv(tmp_path / "labels.csv", index=False)
    ds = D.AUCsvDataset(tmp_path / "labels.csv", shared_data / "expressions", image_size=24,
                        occurrence_threshold=2)
    assert ds.au_names == ["AU1", "AU12L", "AU12R"]
    assert np.allclose(ds.inten[:5, 0], [0, 0.2, 0.4, 1.0, 0.6])  # FACS / 5
    assert ds.occ[:5, 0].tolist() == [0, 0, 1, 1, 1] and np.isnan(ds.occ[5, 0])
    assert ds[5]["occ_mask"][0] == 0
    assert list(ds.subjects[:3]) == ["S005", "S005", "S005"]  # from the filename
    ds.merge_sides()
    assert ds.au_names == ["AU1", "AU12"] and np.allclose(ds.inten[:3, 1], [0, 0.4, 0.8])
    assert ds[0]["image"].shape == (3, 24, 24)


# ---------------------------------------------------------------------------------------------- models
def test_backbones_and_heads():
    from mien.models.au.backbone import AUInference, AUNet, FaceApiBackbone, TimmBackbone

    x = torch.rand(2, 3, 64, 64)
    bb = TimmBackbone("resnet10t", pretrained=False, features_only=True, out_indices=[-2, -1])
    assert len(bb.levels(x)) == 2 and bb(x).shape == (2, bb.out_dim)
    pooled = TimmBackbone("resnet10t", pretrained=False, features_only=False)
    assert pooled(x).shape == (2, pooled.out_dim)
    fa = FaceApiBackbone(pretrained=True)  # shipped weights, no download
    net = AUNet(fa, 3, intensity="regression")
    out = net(x)
    assert out["occ"].shape == (2, 3) and out["int"].shape == (2, 3)
    assert float(out["int"].detach().min()) >= 0 and float(out["int"].detach().max()) <= 1
    probs, inten = AUInference(net.eval())(x)
    assert probs.shape == inten.shape == (2, 3)
    with pytest.raises(ValueError):
        AUNet(fa, 3, intensity="bogus")


def test_task_metrics_and_bad_args():
    task = T.AUImageTask(["AU01", "AU02"], backbone=T.BackboneConfig("resnet10t"),
                         intensity=T.IntensityConfig("regression"))
    rec = {"prob": torch.tensor([[0.9, 0.1], [0.2, 0.8], [0.7, 0.3], [0.1, 0.6]]),
           "occ": torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, float("nan")], [0.0, 1.0]]),
           "int_pred": torch.tensor([[0.8, 0.0], [0.1, 0.6], [0.6, 0.2], [0.0, 0.4]]),
           "int_true": torch.tensor([[1.0, 0.0], [0.0, 0.6], [0.8, 0.2], [0.0, 0.4]])}
    m = task.compute_metrics([rec])
    assert m["f1/AU01"] == 1.0 and m["f1_macro"] == 1.0 and m["auc_macro"] == 1.0
    assert {"icc/AU01", "pcc_macro", "mae/AU02", "f1_eer_macro", "ap/AU02"} <= set(m)
    assert m["mae/AU02"] == pytest.approx(0.0, abs=1e-6)  # FACS units
    with pytest.raises(ValueError):
        T.AUImageTask(["AU01"], loss={"kind": "dice"})
    with pytest.raises(ValueError):
        T.AUImageTask([])


def test_flip_swaps_sided_labels():
    names = ["AU01", "AU12L", "AU12R"]
    perm = F.flip_permutation(names)
    assert perm == [0, 2, 1] and F.flip_permutation(["AU01", "AU02"]) is None
    b = {"occ": torch.tensor([[1.0, 1.0, 0.0], [1.0, 1.0, 0.0]]), "occ_mask": torch.ones(2, 3),
         "int": torch.tensor([[0.2, 0.8, 0.0], [0.2, 0.8, 0.0]]), "int_mask": torch.ones(2, 3)}
    out = A.flip_labels(b, torch.tensor([True, False]), perm)
    assert out["occ"].tolist() == [[1, 0, 1], [1, 1, 0]]
    assert torch.allclose(out["int"][0], torch.tensor([0.2, 0.0, 0.8]))
    x = torch.rand(2, 3, 8, 8)
    y, f = A.weak_augment(x, translate=0.0, generator=torch.Generator().manual_seed(1), return_flips=True)
    for i in range(2):
        assert torch.equal(y[i], x[i].flip(-1) if f[i] else x[i])
