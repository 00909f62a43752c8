"""Dyadic training data for the reaction tasks: :class:`ReactionDataModule` over
:class:`mien.data.react.DyadicDataset` (``mien prepare --mode dyadic`` shards or the official REACT layout
converted to them), split into training and held-out dyads by SESSION (both roles of a dyad stay together).

Batches: ``speaker`` (B, T, D_s) float32, ``speaker_attrs`` / ``listener_attrs`` (B, T, 25) float32 (NaN where a
dimension is unavailable), ``index`` (B,) long (row of the appropriateness matrix), ``session`` list[str].
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence

import lightning.pytorch as pl
import numpy as np
import torch

from mien.pipelines.react_eval import held_out

__all__ = ["ReactionDataModule", "collate", "held_out"]


def collate(items: list[dict]) -> dict:
    """Stack DyadicDataset items of equal length into a batch."""
    out = {k: torch.from_numpy(np.stack([it[k] for it in items])) for k in ("speaker", "speaker_attrs",
                                                                            "listener_attrs")}
    out["index"] = torch.tensor([int(it["index"]) for it in items])
    out["session"] = [it["session"] for it in items]
    return out


class _Items(torch.utils.data.Dataset):
    def __init__(self, items: list[dict]):
        self.items = items

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int) -> dict:
        return self.items[i]


class _Filtered(torch.utils.data.IterableDataset):
    def __init__(self, ds, keep):
        super().__init__()
        self.ds, self.keep = ds, keep

    def __iter__(self):
        return (it for it in self.ds if self.keep(it))


class ReactionDataModule(pl.LightningDataModule):
    """Training / held-out windows of a dyadic dataset.

    Args:
        root: dyadic dataset root (folder or fsspec URL; ``manifest.json`` of ``mien prepare --mode dyadic``).
        window: frames per item (750 = a REACT clip); stride: hop (default ``window``).
        features: speaker feature groups (``mien.data.react.FEATURE_GROUPS``; None: all stored).
        val_root: a separate held-out dataset (e.g. the REACT val split); else held-out sessions of ``root``:
        val_sessions: session names held out; val_fraction: or a stable hashed fraction of the sessions.
        exclude_sessions: sessions used by neither (e.g. dyads sharing a person with the held-out ones).
        batch_size, num_workers: DataLoader.
        in_memory: read the windows once into memory (small sets; shuffled each epoch) instead of streaming.
        seed: of the session hash.

    Attributes (after construction): ``feature_names`` (the D_s speaker feature names), ``fps`` (the manifest's),
    ``appropriateness`` ((2M, 2M) bool or None).
    """

    def __init__(self, root: str, window: int = 750, stride: int | None = None,
                 features: Sequence[str] | None = None, val_root: str | None = None,
                 val_sessions: Sequence[str] | None = None, val_fraction: float = 0.0,
                 exclude_sessions: Sequence[str] | None = None, batch_size: int = 4,
                 num_workers: int = 0, in_memory: bool = True, seed: int = 0):
        super().__init__()
        from mien.data.react import load_appropriateness, speaker_feature_names

        self.save_hyperparameters()
        self.feature_names = speaker_feature_names(root, list(features) if features else None)
        self.fps = float(self._manifest(root).get("fps") or 25.0)
        try:
            self.appropriateness = load_appropriateness(root)
        except (ValueError, OSError):
            self.appropriateness = None
        self._train = self._val = None

    @staticmethod
    def _manifest(root: str) -> dict:
        from mien.data import store

        fs, path = store.get_fs(root)
        return store.read_json(fs, store.join(path, "manifest.json"))

    def _is_val(self, session: str) -> bool:
        h = self.hparams
        if h.val_root:
            return False
        if h.val_sessions:
            return session in set(h.val_sessions)
        return h.val_fraction > 0 and held_out(session, h.val_fraction, h.seed)

    def _dataset(self, root: str):
        from mien.data.react import DyadicDataset

        h = self.hparams
        return DyadicDataset(root, window=h.window, stride=h.stride, features=list(h.features) if h.features else None)

    def setup(self, stage: str | None = None) -> None:
        if self._train is not None:
            return
        h = self.hparams
        ds = self._dataset(h.root)
        if h.in_memory:
            drop = set(h.exclude_sessions or ())
            items = [it for it in ds if it["session"] not in drop]
            short = [it for it in items if len(it["speaker"]) != h.window]
            if short:  # a dyad shorter than the window gives one shorter item, which cannot be batched
                warnings.warn(f"{h.root}: {len(short)} window(s) shorter than {h.window} frames skipped "
                              f"(sessions {sorted({it['session'] for it in short})[:5]})", stacklevel=2)
                items = [it for it in items if len(it["speaker"]) == h.window]
            train = [it for it in items if not self._is_val(it["session"])]
            val = list(self._dataset(h.val_root)) if h.val_root else [it for it in items if self._is_val(it["session"])]
            if not train:
                raise ValueError(f"{h.root}: no training window (dataset empty or every session held out)")
            self._train, self._val = _Items(train), _Items(val) if val else None
        else:
            drop, w = set(h.exclude_sessions or ()), h.window

            def keep(val: bool):  # whole windows only (a short dyad's one shorter item cannot be batched)
                return lambda it: (it["session"] not in drop and self._is_val(it["session"]) == val
                                   and len(it["speaker"]) == w)

            self._train = _Filtered(ds, keep(False))
            self._val = (_Filtered(self._dataset(h.val_root), lambda it: len(it["speaker"]) == w) if h.val_root else
                         _Filtered(ds, keep(True)) if (h.val_sessions or h.val_fraction > 0) else None)

    def train_items(self) -> list[dict]:
        """The training windows (in memory; streams the set once when ``in_memory`` is off)."""
        self.setup()
        return self._train.items if isinstance(self._train, _Items) else list(self._train)

    def iter_train(self):
        """Iterate the training windows once (streamed when ``in_memory`` is off)."""
        self.setup()
        return iter(self._train)

    def val_items(self) -> list[dict]:
        """The held-out windows."""
        self.setup()
        if self._val is None:
            return []
        return self._val.items if isinstance(self._val, _Items) else list(self._val)

    def train_dataloader(self):
        h = self.hparams
        shuffle = isinstance(self._train, _Items)
        return torch.utils.data.DataLoader(self._train, batch_size=h.batch_size, shuffle=shuffle, collate_fn=collate,
                                           num_workers=h.num_workers, drop_last=shuffle and len(self._train) > h.batch_size)

    def val_dataloader(self):
        if self._val is None:
            return []
        return torch.utils.data.DataLoader(self._val, batch_size=self.hparams.batch_size, collate_fn=collate,
                                           num_workers=self.hparams.num_workers)
