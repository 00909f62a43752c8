"""Held-out evaluation of a reaction model against the REACT sanity baselines (``mien evaluate reaction``).

On the held-out windows of a dyadic dataset (a separate root, or the sessions :func:`held_out` puts aside —
the same split as :class:`mien.tasks.reaction.ReactionDataModule`), every method produces R reactions per
speaker window and is scored by :func:`mien.metrics.react.react_metrics`, official and corrected:

- ``model (offline)`` / ``model (online)``: :meth:`ReactionModel.generate`;
- ``random listener``: R real listener windows drawn from the TRAINING windows;
- ``mirror``: the speaker's own attributes (listener = speaker);
- ``nearest neighbour``: the training listeners of the R training speakers nearest by speaker FEATURES
  (Euclidean on the per-feature mean and standard deviation over the window, z-scored with the model's
  training statistics);
- ``appropriate listener (oracle)``: real held-out listeners marked appropriate — an upper bound, not a method.

Appropriateness of held-out windows: window i's own listener, plus windows j of the same start frame whose
clips the dataset's matrix marks appropriate. NaN attributes (mien-analysed data has no valence/arousal, AU10 or
contempt; missing faces) are set to 0 in the ground truth and in every method's reactions alike, and listed in
the report (``nan_filled``).
"""

from __future__ import annotations

import hashlib
import os

import numpy as np

__all__ = ["evaluate_reactions", "held_out", "markdown_table"]

METRICS = ("FRCorr", "FRDist", "FRDiv", "FRVar", "FRDvs", "FRSyn")


def held_out(session: str, fraction: float, seed: int = 0) -> bool:
    """Stable session split: True for about ``fraction`` of sessions (hash of seed and name, not of order)."""
    h = int(hashlib.sha1(f"{seed}:{session}".encode()).hexdigest()[:8], 16)
    return h / 0xFFFFFFFF < fraction


def _load(root: str, window: int, groups: list[str] | None):
    """Whole windows of ``window`` frames (a dyad shorter than that is skipped, with a warning)."""
    import warnings

    from mien.data.react import DyadicDataset

    items = list(DyadicDataset(root, window=window, stride=window, features=groups))
    short = sorted({it["session"] for it in items if len(it["speaker"]) != window})
    if short:
        warnings.warn(f"{root}: {len(short)} dyad(s) shorter than {window} frames skipped: {', '.join(short[:5])}",
                      stacklevel=2)
    return [it for it in items if len(it["speaker"]) == window]


def _appropriate(items: list[dict], matrix: np.ndarray | None) -> np.ndarray:
    n = len(items)
    a = np.eye(n, dtype=bool)
    if matrix is not None:
        idx = np.array([it["index"] for it in items])
        start = np.array([it.get("start", 0) for it in items])
        a |= matrix[idx][:, idx] & (start[:, None] == start[None, :])
    return a


def evaluate_reactions(model, root: str, *, val_root: str | None = None, val_fraction: float = 0.25,
                       val_sessions: list[str] | None = None, exclude_sessions: list[str] | None = None,
                       split_seed: int = 0, window: int = 100, n: int = 10,
                       online: tuple[bool, ...] = (False, True), seed: int = 0, temperature: float = 1.0,
                       top_k: int | None = None, top_p: float | None = None, workers: int | None = None) -> dict:
    """Score ``model`` and the baselines on held-out windows (module doc).

    Args:
        model: a ReactionModel or its folder. root: dyadic dataset (training windows; held-out ones too unless
            ``val_root``). val_fraction / val_sessions / split_seed: the held-out sessions of ``root``;
            exclude_sessions: sessions in neither set (as in training).
        window: frames per evaluated window (≥ 51 for FRSyn's ±49 lags). n: reactions per speaker (R).
        online: the decoding modes of the model to score.

    Returns:
        ``{"rows": {method: {"official": {...}, "corrected": {...}}}, "n_heldout", "n_train", "window", "R",
        "nan_filled": [attribute names], "sessions": [...]}``.

    Raises:
        InputError: unreadable dataset or model. ValueError: no held-out or training window, features the model
        needs missing from the dataset.
    """
    import torch

    from mien.data.react import load_appropriateness, speaker_feature_names
    from mien.metrics.react import REACT_ATTRIBUTES, react_baselines, react_metrics
    from mien.models.reaction.model import load_reaction_model

    m = load_reaction_model(model) if isinstance(model, (str, os.PathLike)) else model
    groups = list(dict.fromkeys(c.split(":", 1)[0] for c in m.speaker_feature_names))
    for r in [root] + ([val_root] if val_root else []):
        if speaker_feature_names(r, groups) != m.speaker_feature_names:
            raise ValueError(f"{r}: its speaker features ({groups}) are not the model's columns")
    drop = set(exclude_sessions or ())
    items = [it for it in _load(root, window, groups) if it["session"] not in drop]
    if val_root:
        train, test = items, _load(val_root, window, groups)
        matrix_root = val_root
    else:
        is_val = (lambda s: s in set(val_sessions)) if val_sessions else (lambda s: held_out(s, val_fraction, split_seed))
        train = [it for it in items if not is_val(it["session"])]
        test = [it for it in items if is_val(it["session"])]
        matrix_root = root
    if not test or not train:
        raise ValueError(f"need held-out and training windows of {window} frames, got {len(test)} and {len(train)}")
    try:
        matrix = load_appropriateness(matrix_root)
    except (ValueError, OSError):
        matrix = None
    a = _appropriate(test, matrix)
    stack = lambda key, its: np.stack([it[key] for it in its]).astype(np.float64)  # noqa: E731
    spk_attr, lst_attr = stack("speaker_attrs", test), stack("listener_attrs", test)
    tr_spk, tr_lst = stack("speaker_attrs", train), stack("listener_attrs", train)
    nan_dims = ~np.isfinite(np.concatenate([spk_attr, lst_attr])).any(axis=(0, 1))  # never available
    fill = lambda x: np.nan_to_num(x, nan=0.0)  # noqa: E731
    preds: dict[str, np.ndarray] = {}
    spk_feats = torch.from_numpy(np.stack([it["speaker"] for it in test]))
    for on in online:
        out = m.generate(spk_feats, n, online=on, seed=seed, temperature=temperature, top_k=top_k, top_p=top_p)
        preds[f"model ({'online' if on else 'offline'})"] = out.numpy().astype(np.float64)
    base = react_baselines(fill(spk_attr), fill(lst_attr), fill(tr_spk), fill(tr_lst), a, R=n, seed=seed)
    preds["random listener"] = base["random_train"]
    preds["mirror"] = base["mirror"]
    # nearest neighbour by speaker features (z-scored with the model's statistics)
    z = lambda its: m.normalise_speaker(torch.from_numpy(np.stack([it["speaker"] for it in its]))).double().numpy()  # noqa: E731
    feats = lambda x: np.concatenate([x.mean(1), x.std(1)], 1)  # noqa: E731
    ft, fr = feats(z(test)), feats(z(train))
    dist = ((ft[:, None] - fr[None]) ** 2).sum(-1)
    nearest = np.argsort(dist, axis=1, kind="stable")[:, :n]
    preds["nearest neighbour (speaker features)"] = tr_lst[nearest[:, np.arange(n) % nearest.shape[1]]]
    preds["appropriate listener (oracle)"] = base["appropriate_listener"]
    rows = {}
    for name, p in preds.items():
        p = np.where(nan_dims, 0.0, fill(p))
        rows[name] = {mode: react_metrics(p, fill(lst_attr), fill(spk_attr), a, corrected=(mode == "corrected"),
                                          workers=workers) for mode in ("official", "corrected")}
    return {"rows": rows, "n_heldout": len(test), "n_train": len(train), "window": window, "R": n,
            "excluded": sorted(drop),
            "nan_filled": [REACT_ATTRIBUTES[i] for i in np.flatnonzero(nan_dims)],
            "sessions": sorted({it["session"] for it in test}), "appropriate_per_speaker": float(a.sum(1).mean())}


def markdown_table(report: dict) -> str:
    """The report as Markdown: one table per mode (official, corrected), one row per method."""
    lines = [f"Held-out windows: {report['n_heldout']} ({report['window']} frames; sessions "
             f"{', '.join(report['sessions'])}), training windows: {report['n_train']}, R = {report['R']} reactions "
             f"per speaker, {report['appropriate_per_speaker']:.2f} appropriate listeners per speaker on average."]
    if report.get("excluded"):
        lines.append(f"Sessions in neither set: {', '.join(report['excluded'])}.")
    if report["nan_filled"]:
        lines.append(f"Attributes missing in the data, set to 0 everywhere: {', '.join(report['nan_filled'])}.")
    arrows = {"FRCorr": "↑", "FRDist": "↓", "FRDiv": "↑", "FRVar": "↑", "FRDvs": "↑", "FRSyn": "↓"}
    for mode in ("official", "corrected"):
        lines += ["", f"**{mode}** ({'REACT challenge code: sums over R, first reaction in FRSyn' if mode == 'official' else 'means over R, all reactions in FRSyn, NaN-safe Pearson'})", "",
                  "| method | " + " | ".join(f"{k} {arrows[k]}" for k in METRICS) + " |",
                  "|---|" + "---:|" * len(METRICS)]
        for name, modes in report["rows"].items():
            v = modes[mode]
            lines.append(f"| {name} | " + " | ".join(f"{v[k]:.4f}" if abs(v[k]) < 100 else f"{v[k]:.2f}"
                                                      for k in METRICS) + " |")
    return "\n".join(lines) + "\n"
