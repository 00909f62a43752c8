"""Video files → face-crop clips for tokenizer training: :func:`load_face_crops`, :func:`clips_from_crops`,
:class:`ClipTensorDataset` and :class:`VideoCropsDataModule` (a small in-memory Lightning DataModule over a few
videos, for quick runs and tests; prepared datasets are read by :class:`mien.data.datamodule.ClipDataModule`);
:func:`unpack_batch` and :func:`batch_landmarks`, the frames, subject ids and landmarks of any batch the tokenizer
tasks and :func:`mien.tasks.tokenizer.banks.fill_banks` take.

They stay in the task package rather than in :mod:`mien.data` because they run face analysis
(:func:`mien.pipelines.analyze.analyze`) and Lightning, which ``mien.data`` does not.
"""

from __future__ import annotations

import os

import lightning.pytorch as pl
import numpy as np
import torch

__all__ = ["ClipTensorDataset", "VideoCropsDataModule", "batch_landmarks", "clips_from_crops", "load_face_crops",
           "unpack_batch"]


def unpack_batch(batch, crop_size: int | None = None) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Frames (B, T, 3, S, S) float in [0, 1] and subject ids (B,) from a batch.

    Accepts ``(frames, ids)`` tuples, ``{"frames", "subject_id"}`` dicts, and batches of mien shards
    (:class:`mien.data.ClipDataModule`: ``video`` (B, T, 3, S, S) uint8, ``meta[i]["subject_id"]``), whose
    crops are resized (antialiased bilinear) to ``crop_size`` when it differs.
    """
    if isinstance(batch, dict) and "video" in batch:
        frames = batch["video"]
        ids = torch.tensor([int(m["subject_id"]) for m in batch["meta"]], device=frames.device)
    elif isinstance(batch, dict):
        frames, ids = batch["frames"], batch.get("subject_id")
    else:
        frames, ids = batch[0], (batch[1] if len(batch) > 1 else None)
    if frames.dtype == torch.uint8:
        frames = frames.float() / 255.0
    if frames.ndim == 4:
        frames = frames.unsqueeze(1)
    if frames.ndim != 5:
        raise ValueError(f"expected frames (B, T, 3, H, W), got {tuple(frames.shape)}")
    if crop_size is not None and frames.shape[-1] != crop_size:
        b, t = frames.shape[:2]
        frames = torch.nn.functional.interpolate(frames.flatten(0, 1), size=(crop_size, crop_size),
                                                 mode="bilinear", antialias=True, align_corners=False)
        frames = frames.clamp(0, 1).unflatten(0, (b, t))
    return frames, ids


def batch_landmarks(batch, frames: torch.Tensor) -> torch.Tensor | None:
    """Landmarks (B, T, K, 2) in px of the (possibly resized) ``frames`` (B, T, 3, S, S) from a batch's
    ``landmarks`` (shards: crop px of the shard's crops), or None when the batch has none."""
    if not isinstance(batch, dict) or batch.get("landmarks") is None:
        return None
    lm = torch.as_tensor(batch["landmarks"]).float()[..., :2]
    src = batch["video"].shape[-1] if "video" in batch else batch["frames"].shape[-1]
    return (lm * (frames.shape[-1] / src)).to(frames.device)


def load_face_crops(video: str | os.PathLike, crop_size: int, start: float | None = None,
                    end: float | None = None, crop: str = "aligned-ffhq-0.0") -> np.ndarray:
    """Square face crops of the first tracked face in every frame that has one.

    Uses :func:`mien.pipelines.analyze.analyze` (boxes, landmarks), ``mien.io.video.VideoSource`` (frames) and
    :func:`mien.face.crops.face_crop` with the crop contract ``crop`` (default: the aligned crop of
    ``mien prepare`` with margin 0, without its temporal smoothing).

    Returns:
        uint8 (N, crop_size, crop_size, 3) RGB, in frame order (frames without a face are skipped).

    Raises:
        mien.errors.InputError: unreadable video.
    """
    from mien.face.crops import face_crop
    from mien.io.video import VideoSource
    from mien.pipelines.analyze import analyze
    from mien.pipelines.tokens import first_faces

    faces = first_faces(analyze(video, start=start, end=end))
    crops = [face_crop(fr.image, crop, crop_size, *faces[fr.index])
             for fr in VideoSource(video, start=start, end=end) if fr.index in faces]
    if not crops:
        return np.zeros((0, crop_size, crop_size, 3), np.uint8)
    return np.stack(crops)


class ClipTensorDataset(torch.utils.data.Dataset):
    """In-memory clips: ``frames`` uint8 (K, T, 3, H, W), ``subject_id`` long (K,) → batch dicts."""

    def __init__(self, frames: torch.Tensor, subject_id: torch.Tensor):
        self.frames, self.subject_id = frames, subject_id

    def __len__(self) -> int:
        return self.frames.shape[0]

    def __getitem__(self, i: int) -> dict:
        return {"frames": self.frames[i], "subject_id": self.subject_id[i]}


def clips_from_crops(crops: np.ndarray, clip_len: int, stride: int | None = None) -> torch.Tensor:
    """uint8 (N, H, W, 3) crops → uint8 (K, clip_len, 3, H, W) consecutive clips (hop ``stride``)."""
    stride = stride or clip_len
    x = torch.from_numpy(np.ascontiguousarray(crops)).permute(0, 3, 1, 2)
    starts = range(0, x.shape[0] - clip_len + 1, stride)
    if not len(starts):
        return torch.zeros((0, clip_len, *x.shape[1:]), dtype=torch.uint8)
    return torch.stack([x[s:s + clip_len] for s in starts])


class VideoCropsDataModule(pl.LightningDataModule):
    """Small in-memory DataModule: face crops of a few videos cut into clips (subject id = video index).

    Args:
        videos: video files (one subject each).
        crop_size: crop side (must equal the model's crop size).
        clip_len: frames T per clip; stride: hop between clips (default clip_len).
        start, end: time window in seconds.
        batch_size: clips per batch; val_videos: indices of ``videos`` used for validation only (else none).
        crop: crop contract of the crops (:func:`mien.face.crops.parse_crop_contract`); must equal the model's
            ``config.crop`` (checked when fitting).
    """

    def __init__(self, videos: list[str], crop_size: int = 64, clip_len: int = 8, stride: int | None = None,
                 start: float | None = None, end: float | None = 2.0, batch_size: int = 2,
                 val_videos: list[int] | None = None, crop: str = "aligned-ffhq-0.0", num_workers: int = 0):
        super().__init__()
        self.save_hyperparameters()
        self.crop_contract = crop
        self.train_set = self.val_set = None

    def setup(self, stage: str | None = None) -> None:
        if self.train_set is not None:
            return
        h = self.hparams
        parts: dict[str, list] = {"train": [], "val": []}
        for i, v in enumerate(h.videos):
            clips = clips_from_crops(load_face_crops(v, h.crop_size, h.start, h.end, h.crop),
                                     h.clip_len, h.stride)
            split = "val" if h.val_videos and i in h.val_videos else "train"
            parts[split].append((clips, torch.full((clips.shape[0],), i, dtype=torch.long)))

        def cat(items):
            if not items:
                return None
            return ClipTensorDataset(torch.cat([c for c, _ in items]), torch.cat([s for _, s in items]))

        self.train_set, self.val_set = cat(parts["train"]), cat(parts["val"])
        if self.train_set is None or len(self.train_set) == 0:
            raise ValueError("no training clip: videos too short or no face found")

    def train_dataloader(self):
        return torch.utils.data.DataLoader(self.train_set, batch_size=self.hparams.batch_size, shuffle=True,
                                           num_workers=self.hparams.num_workers, drop_last=False)

    def val_dataloader(self):
        if self.val_set is None:
            return []
        return torch.utils.data.DataLoader(self.val_set, batch_size=self.hparams.batch_size,
                                           num_workers=self.hparams.num_workers)

