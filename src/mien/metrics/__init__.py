"""Evaluation metrics: AU occurrence/intensity (:mod:`mien.metrics.au`), emotion classification
(:mod:`mien.metrics.emotion`), identity similarity (:mod:`mien.metrics.identity`) and image reconstruction
(PSNR/SSIM, tokenizer swap tests: :mod:`mien.metrics.reconstruction`) and listener-reaction generation (REACT
challenge FRCorr/FRDist/FRDiv/FRVar/FRDvs/FRSyn: :mod:`mien.metrics.react`, with FRDist's exact multivariate
DTW search in :mod:`mien.metrics.dtw`).

All take numpy arrays or torch tensors and return numpy float64 values; see each module for shapes, the
NaN conventions and the sources of the definitions. Needs ``torch`` and ``torchmetrics``.
"""

from mien.metrics.au import (
    au_average_precision,
    au_f1,
    au_f1_at_eer,
    au_icc,
    au_mae,
    au_pearson,
    au_roc_auc,
    eer_threshold,
    icc3_1,
    icc_mean_squares,
    macro_f1,
)
from mien.metrics.emotion import accuracy, confusion_matrix, emotion_f1, emotion_macro_f1
from mien.metrics.identity import identity_similarity
from mien.metrics.react import frcorr, frdist, frdiv, frdvs, frsyn, frvar, react_baselines, react_metrics
from mien.metrics.reconstruction import image_quality, tokenizer_swap_report

__all__ = [
    "accuracy",
    "au_average_precision",
    "au_f1",
    "au_f1_at_eer",
    "au_icc",
    "au_mae",
    "au_pearson",
    "au_roc_auc",
    "confusion_matrix",
    "eer_threshold",
    "emotion_f1",
    "emotion_macro_f1",
    "frcorr",
    "frdist",
    "frdiv",
    "frdvs",
    "frsyn",
    "frvar",
    "icc3_1",
    "icc_mean_squares",
    "identity_similarity",
    "image_quality",
    "macro_f1",
    "react_baselines",
    "react_metrics",
    "tokenizer_swap_report",
]
