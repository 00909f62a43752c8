"""mien.metrics against values computed by hand (no shared data needed)."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("torchmetrics")

from mien import metrics as M  # noqa: E402

# Shrout & Fleiss (1979), Table 2: 6 targets rated by 4 judges.
SF_TABLE2 = np.array([
    [9, 2, 5, 8],
    [6, 1, 3, 2],
    [8, 4, 6, 8],
    [7, 1, 2, 6],
    [10, 5, 6, 9],
    [6, 2, 4, 7],
], float)


def test_icc_shrout_fleiss_table2():
    ms = M.icc_mean_squares(SF_TABLE2)
    # the paper's Table 3 (ANOVA) values, rounded to 2 decimals there
    assert ms["BMS"] == pytest.approx(11.24, abs=0.01)
    assert ms["WMS"] == pytest.approx(6.26, abs=0.01)
    assert ms["JMS"] == pytest.approx(32.49, abs=0.01)
    assert ms["EMS"] == pytest.approx(1.02, abs=0.01)
    # the paper reports ICC(3,1) = .71
    assert M.icc3_1(SF_TABLE2) == pytest.approx(0.71, abs=0.005)
    # exact: (BMS - EMS) / (BMS + 3 EMS) from the exact sums of squares
    assert M.icc3_1(SF_TABLE2) == pytest.approx((ms["BMS"] - ms["EMS"]) / (ms["BMS"] + 3 * ms["EMS"]))


def test_icc_two_raters_by_hand():
    # targets rated [1, 2, 3, 4] and [2, 3, 4, 4]: grand mean 23/8, row means 1.5 2.5 3.5 4, col means 2.5 3.25
    # SS_total = 8.875, SS_rows = 2 * 3.6875 = 7.375, SS_cols = 4 * 0.28125 = 1.125, SS_err = 0.375
    # BMS = 7.375 / 3 = 59/24, EMS = 0.375 / 3 = 3/24 -> ICC(3,1) = (56/24) / (62/24) = 28/31
    x = np.array([[1, 2], [2, 3], [3, 4], [4, 4]], float)
    ms = M.icc_mean_squares(x)
    assert ms["BMS"] == pytest.approx(59 / 24) and ms["EMS"] == pytest.approx(3 / 24)
    assert ms["JMS"] == pytest.approx(1.125)
    got = M.au_icc(x[:, 0], x[:, 1])
    assert got.shape == (1,)
    assert got[0] == pytest.approx(28 / 31)


def test_icc_consistency_ignores_offset_and_constant_is_nan():
    t = np.array([0, 1, 2, 3, 5], float)
    assert M.au_icc(t, t + 2.0)[0] == pytest.approx(1.0)  # consistency: a constant offset is not penalised
    both = M.au_icc(np.stack([t, np.zeros(5)], 1), np.stack([t, np.zeros(5)], 1))
    assert both[0] == pytest.approx(1.0) and np.isnan(both[1])


def test_eer_threshold_by_hand():
    y = np.array([0, 0, 0, 1, 1, 1])
    s = np.array([0.1, 0.2, 0.6, 0.4, 0.8, 0.9])
    # threshold 0.9: FPR 0, FNR 2/3; 0.8: FPR 0, FNR 1/3; 0.6: FPR 1/3, FNR 1/3 -> equal: EER point
    thr, eer = M.eer_threshold(y, s)
    assert thr[0] == pytest.approx(0.6)
    assert eer[0] == pytest.approx(1 / 3)
    # at 0.6: predicted positive {0.6 (neg), 0.8, 0.9}: TP 2, FP 1, FN 1 -> F1 = 4 / 6
    f1, thr2 = M.au_f1_at_eer(y, s)
    assert f1[0] == pytest.approx(2 / 3) and thr2[0] == pytest.approx(0.6)


def test_eer_perfect_separation_and_ties():
    y = np.array([0, 0, 1, 1])
    thr, eer = M.eer_threshold(y, np.array([0.1, 0.2, 0.7, 0.9]))
    assert thr[0] == pytest.approx(0.7) and eer[0] == 0.0
    # all scores equal: the only threshold predicts everything positive: FPR 1, FNR 0 -> EER 0.5
    thr, eer = M.eer_threshold(y, np.full(4, 0.3))
    assert thr[0] == pytest.approx(0.3) and eer[0] == pytest.approx(0.5)


def test_f1_ap_auc_by_hand_and_torch_input():
    y = torch.tensor([[1, 0], [1, 1], [0, 0], [0, 1], [1, 0]])
    s = torch.tensor([[0.9, 0.2], [0.6, 0.7], [0.55, 0.1], [0.3, 0.4], [0.4, 0.8]])
    # AU a: >=0.5 -> pred [1, 1, 1, 0, 0]: TP 2, FP 1, FN 1 -> F1 = 4/6
    # AU b: pred [0, 1, 0, 0, 1]: TP 1, FP 1, FN 1 -> F1 = 1/2
    f1 = M.au_f1(y, s)
    np.testing.assert_allclose(f1, [2 / 3, 0.5], rtol=1e-6)
    assert M.macro_f1(y, s) == pytest.approx((2 / 3 + 0.5) / 2)
    # thresholds 0.35: a: pred [1, 1, 1, 0, 1]: TP 3, FP 1 -> 6/7; b: pred [0, 1, 0, 1, 1]: TP 2, FP 1 -> 4/5
    np.testing.assert_allclose(M.au_f1(y, s, threshold=[0.35, 0.35]), [6 / 7, 0.8], rtol=1e-6)
    # AUC a: positives {0.9, 0.6, 0.4}, negatives {0.55, 0.3}: pairs won 2+1+1 = 5 of 6 ... 0.9>both, 0.6>both,
    # 0.4 > 0.3 only -> (2 + 2 + 1) / 6
    auc = M.au_roc_auc(y, s)
    assert auc[0] == pytest.approx(5 / 6)
    # AU b: positives {0.7, 0.4}, negatives {0.2, 0.1, 0.8}: 0.7 beats 2, 0.4 beats 2 -> 4 / 6
    assert auc[1] == pytest.approx(4 / 6)
    # AP a: ranking 0.9(+) 0.6(+) 0.55(-) 0.4(+) 0.3(-): recall steps 1/3 at P=1, 1/3 at P=1, 1/3 at P=3/4
    ap = M.au_average_precision(y, s)
    assert ap[0] == pytest.approx((1 + 1 + 0.75) / 3)


def test_single_class_is_nan_and_nan_rows_are_ignored():
    y = np.array([[1, 0, 1], [1, 0, 0], [1, 0, 1], [1, 0, np.nan]])
    s = np.array([[0.9, 0.1, 0.8], [0.2, 0.7, 0.3], [0.6, 0.2, 0.6], [0.7, 0.3, 0.1]])
    auc = M.au_roc_auc(y, s)
    ap = M.au_average_precision(y, s)
    thr, eer = M.eer_threshold(y, s)
    f1 = M.au_f1(y, s)
    assert np.isnan(auc[:2]).all() and np.isnan(ap[:2]).all() and np.isnan(eer[:2]).all()
    assert f1[0] == pytest.approx(2 * 3 / (2 * 3 + 1))  # all-positive AU: F1 defined (3 TP, 1 FN)
    assert np.isnan(f1[1])  # no positive labels: F1 undefined
    assert auc[2] == pytest.approx(1.0)  # NaN label row dropped; remaining rows separate perfectly
    assert np.isfinite(M.macro_f1(y, s))


def test_pearson_mae():
    t = np.array([[0, 1], [1, 1], [2, 1], [3, 1]], float)
    p = np.array([[1, 0], [3, 1], [5, 2], [7, 1]], float)
    r = M.au_pearson(t, p)
    assert r[0] == pytest.approx(1.0) and np.isnan(r[1])  # constant truth column -> NaN
    np.testing.assert_allclose(M.au_mae(t, p), [(1 + 2 + 3 + 4) / 4, 0.5])


def test_bad_inputs_raise():
    with pytest.raises(ValueError):
        M.au_f1(np.zeros((3, 2)), np.zeros((3, 3)))
    with pytest.raises(ValueError):
        M.au_f1(np.array([0, 2, 1]), np.zeros(3))
    with pytest.raises(ValueError):
        M.icc3_1(np.zeros((1, 3)))


def test_emotion_metrics_by_hand():
    y = np.array([0, 0, 1, 1, 2, 2])
    p = np.array([0, 1, 1, 1, 2, 0])
    cm = M.confusion_matrix(y, p, num_classes=4)
    expected = np.zeros((4, 4), int)
    for a, b in zip(y, p, strict=True):
        expected[a, b] += 1
    np.testing.assert_array_equal(cm, expected)
    assert M.accuracy(y, p) == pytest.approx(4 / 6)
    # class 0: TP 1 FP 1 FN 1 -> 1/2; class 1: TP 2 FP 1 FN 0 -> 4/5; class 2: TP 1 FP 0 FN 1 -> 2/3;
    # class 3 never occurs nor is predicted -> NaN, left out of the macro mean
    f1 = M.emotion_f1(y, p, num_classes=4)
    np.testing.assert_allclose(f1[:3], [0.5, 0.8, 2 / 3])
    assert np.isnan(f1[3])
    assert M.emotion_macro_f1(y, p, num_classes=4) == pytest.approx((0.5 + 0.8 + 2 / 3) / 3)
    scores = np.eye(4)[p] * 0.7 + 0.05
    assert M.accuracy(torch.tensor(y), torch.tensor(scores)) == pytest.approx(4 / 6)


def test_identity_similarity():
    a = np.array([[1.0, 0.0], [1.0, 1.0], [0.0, 0.0], [3.0, 4.0]])
    b = np.array([[0.0, 2.0], [2.0, 2.0], [1.0, 0.0], [-3.0, -4.0]])
    s = M.identity_similarity(a, b)
    assert s.shape == (4,)
    np.testing.assert_allclose(s[[0, 1, 3]], [0.0, 1.0, -1.0], atol=1e-12)
    assert np.isnan(s[2])
    assert M.identity_similarity(torch.ones(5), torch.ones(5) * 3).shape == (1,)
    with pytest.raises(ValueError):
        M.identity_similarity(np.ones((2, 3)), np.ones((2, 4)))


def test_image_quality_known_values():
    import torch

    from mien.metrics import image_quality

    a = torch.full((2, 3, 32, 32), 0.5)
    b = a + 0.1  # MSE 0.01 -> PSNR 20 dB
    q = image_quality(b, a)
    assert q["psnr"] == pytest.approx(20.0, abs=1e-3)
    assert image_quality(a, a)["ssim"] == pytest.approx(1.0, abs=1e-6)


def test_tokenizer_swap_report_shapes_and_keys():
    import torch

    import mien
    from mien.metrics import tokenizer_swap_report

    torch.manual_seed(0)
    model = mien.create_model("tokenizer-tiny")
    frames = torch.rand(6, 3, 64, 64)
    rep = tokenizer_swap_report(model, frames, torch.tensor([0, 0, 0, 1, 1, 1]))
    assert set(rep) == {"reconstruction", "token_swap", "subject_swap", "n_frames"}
    for k in ("reconstruction", "token_swap", "subject_swap"):
        assert np.isfinite(rep[k]["psnr"]) and -1 <= rep[k]["ssim"] <= 1
