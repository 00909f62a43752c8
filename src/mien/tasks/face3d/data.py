"""Data of the SMIRK/TEASER task.

* mien shards (``mien prepare``) through :class:`mien.data.datamodule.ClipDataModule`: batches of clips
  (``video`` (B, T, 3, S, S) uint8, ``landmarks`` (B, T, 478, 3) crop px); the task samples frames from each clip.
* image folders with :class:`Face3DImageDataModule`: every ``.jpg``/``.png`` is cropped as the shards are
  (:func:`mien.face.align.similarity_params`, FFHQ-style, ``margin``) from its MediaPipe landmarks — read from
  ``<image stem>.npy`` next to it ((478, 2|3) source px) or computed with mien's landmarker when absent.

Batches reaching the task: ``{"image": (B, 3, S, S) float [0, 1], "landmarks": (B, 478, 3) crop px}``.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import lightning as L
import numpy as np
import torch

__all__ = ["Face3DImageDataModule", "ImageFaceDataset", "load_image_faces"]

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")


def load_image_faces(folders: list[str], size: int, margin: float = 0.0) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Crops and crop-pixel landmarks of the first face of every image under ``folders`` (recursive).

    Returns:
        (crops uint8 (N, S, S, 3) RGB, landmarks float32 (N, 478, 3) crop px, image paths). Images that cannot be
        read or show no face are skipped with one warning naming how many and the first few.

    Raises:
        mien.errors.InputError: a folder does not exist or holds no usable image.
    """
    import cv2

    from mien.errors import InputError
    from mien.face.align import params_to_affine, similarity_params, transform_landmarks, warp_crop
    from mien.face.landmarker import MediaPipeFaceMesh

    paths: list[Path] = []
    for f in folders:
        if not Path(f).is_dir():
            raise InputError(f, "image folder not found")
        paths += sorted(p for p in Path(f).rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
    crops, lms, kept, bad = [], [], [], []
    mesh = None
    try:
        for p in paths:
            img = cv2.imread(str(p), cv2.IMREAD_COLOR)
            if img is None:
                bad.append(f"{p} (unreadable)")
                continue
            img = cv2.cvtColor(img, cv2.COLOR_BGR2RGB)
            side = p.with_suffix(".npy")
            if side.is_file():
                lm = np.load(side, allow_pickle=False).astype(np.float32)
                if lm.shape[0] != 478:
                    bad.append(f"{side} (not (478, 2|3))")
                    continue
                if lm.shape[1] == 2:
                    lm = np.concatenate([lm, np.zeros((478, 1), np.float32)], 1)
            else:
                mesh = mesh or MediaPipeFaceMesh(max_faces=1, static_image_mode=True)
                faces = mesh.process(img)
                if not faces:
                    bad.append(f"{p} (no face)")
                    continue
                lm = faces[0].landmarks
            A = params_to_affine(similarity_params(lm[None], margin), size)
            crops.append(warp_crop(img, A[0], size))
            lms.append(transform_landmarks(lm[None], A)[0])
            kept.append(str(p))
    finally:
        if mesh is not None:
            mesh.close()
    if bad:
        warnings.warn(f"face3d data: skipped {len(bad)} of {len(paths)} images: {', '.join(bad[:3])}"
                      f"{' …' if len(bad) > 3 else ''}", stacklevel=2)
    if not kept:
        raise InputError(", ".join(folders), "no image with a face found")
    return np.stack(crops), np.stack(lms).astype(np.float32), kept


class ImageFaceDataset(torch.utils.data.Dataset):
    """(crops uint8 (N, S, S, 3), landmarks (N, 478, 3) crop px) → ``{"image", "landmarks"}`` items."""

    def __init__(self, crops: np.ndarray, landmarks: np.ndarray):
        self.crops, self.landmarks = crops, landmarks

    def __len__(self):
        return len(self.crops)

    def __getitem__(self, i):
        img = torch.from_numpy(np.ascontiguousarray(self.crops[i])).permute(2, 0, 1).float() / 255.0
        return {"image": img, "landmarks": torch.from_numpy(self.landmarks[i])}


class Face3DImageDataModule(L.LightningDataModule):
    """Image folders with (or without) landmarks; the last ``val_fraction`` of each folder's sorted images (by
    name) is validation.

    Args:
        train: folders of training images. val: folders of validation images (None: ``val_fraction`` split).
        size: crop side S. margin: crop margin (the shards' ``--margin``; crop contract ``aligned-ffhq-<margin>``).
        batch_size, num_workers, val_fraction: loaders.
    """

    def __init__(self, train: list[str], val: list[str] | None = None, size: int = 64, margin: float = 0.0,
                 batch_size: int = 8, num_workers: int = 0, val_fraction: float = 0.1):
        super().__init__()
        self.train_folders, self.val_folders = list(train), list(val or [])
        self.size, self.margin, self.batch_size, self.num_workers = size, margin, batch_size, num_workers
        self.val_fraction = val_fraction
        self.crop_contract = f"aligned-ffhq-{float(margin)}"

    def setup(self, stage: str | None = None) -> None:
        crops, lms, _ = load_image_faces(self.train_folders, self.size, self.margin)
        if self.val_folders:
            self.train_set = ImageFaceDataset(crops, lms)
            self.val_set = ImageFaceDataset(*load_image_faces(self.val_folders, self.size, self.margin)[:2])
        else:
            n_val = int(round(len(crops) * self.val_fraction))
            cut = len(crops) - n_val
            self.train_set = ImageFaceDataset(crops[:cut], lms[:cut])
            self.val_set = ImageFaceDataset(crops[cut:], lms[cut:]) if n_val else None

    def train_dataloader(self):
        return torch.utils.data.DataLoader(self.train_set, batch_size=self.batch_size, shuffle=True,
                                           num_workers=self.num_workers, drop_last=len(self.train_set) > self.batch_size)

    def val_dataloader(self):
        if self.val_set is None:
            return []
        return torch.utils.data.DataLoader(self.val_set, batch_size=self.batch_size, num_workers=self.num_workers)
