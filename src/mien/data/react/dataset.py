"""The training dataset of a dyadic dataset (:mod:`mien.data.react.shards`): windows of both roles of every
dyad as numpy arrays, a ``torch`` IterableDataset (imported lazily by :mod:`mien.data.react`, so the rest of
the package works without torch)."""

from __future__ import annotations

import functools
from collections.abc import Iterator, Sequence

import numpy as np
from torch.utils.data import IterableDataset

from mien.data import shards
from mien.data.react.shards import DYADIC_REQUIRED, _columns, _resolve


class DyadicDataset(IterableDataset):
    """Training windows of a dyadic dataset, both roles of every dyad (a ``torch`` IterableDataset).

    Yields dicts: ``speaker`` float32 (T, D_s) speaker features (columns :func:`speaker_feature_names`),
    ``speaker_attrs`` and ``listener_attrs`` float32 (T, 25) (:data:`~mien.metrics.react.REACT_ATTRIBUTES`,
    NaN where a dimension is not available), ``session`` str, ``index`` int (row of
    :func:`load_appropriateness`), ``start`` int (first frame of the window). T = ``window``; a dyad shorter than
    ``window`` frames gives one item with all its frames. Shards are split across DataLoader workers and
    distributed ranks by WebDataset; a damaged shard is skipped with a warning naming it.

    Args:
        root_or_urls: dataset root (folder or fsspec URL) or a list of its shard URLs.
        window: frames per item (750 = a REACT clip). stride: frames between window starts (default ``window``).
        features: speaker feature groups to keep (default all stored).
    """

    def __init__(self, root_or_urls, window: int = 750, stride: int | None = None,
                 features: Sequence[str] | None = None):
        super().__init__()
        if window < 1 or (stride is not None and stride < 1):
            raise ValueError(f"window and stride must be >= 1, got {window}, {stride}")
        self.urls, self.manifest, self.root = _resolve(root_or_urls)
        self.window, self.stride = window, stride or window
        self.columns = _columns(self.manifest["feature_names"], features)
        self.dyads = {s: i for i, s in enumerate(self.manifest["dyads"])}

    def __iter__(self) -> Iterator[dict]:
        m = len(self.dyads)
        stage = functools.partial(shards.checked_samples, required=DYADIC_REQUIRED)
        pipe = shards.raw_pipeline(self.urls, checker=stage)
        for raw in pipe:
            s = shards.decode_sample(raw, video=False, audio=False)
            session = s["json"]["session"]
            d = self.dyads.get(session)
            if d is None:  # a shard not listed in the manifest (left over from an earlier run)
                continue
            for role, (sp, li) in enumerate((("a", "b"), ("b", "a"))):
                feats = s[f"{sp}.features.npy"][:, self.columns]
                s_attrs, l_attrs = s[f"{sp}.attrs.npy"], s[f"{li}.attrs.npy"]
                t = len(feats)
                starts = range(0, t - self.window + 1, self.stride) if t >= self.window else [0]
                for st in starts:
                    sl = slice(st, st + self.window)
                    yield {"speaker": np.ascontiguousarray(feats[sl], np.float32),
                           "speaker_attrs": np.ascontiguousarray(s_attrs[sl], np.float32),
                           "listener_attrs": np.ascontiguousarray(l_attrs[sl], np.float32),
                           "session": session, "index": d + role * m, "start": st}
