"""AU training images from ``mien prepare`` datasets: labelled frames (``mien prepare --au-labels``, shards with
``au.npy``) and unlabelled frames streamed for FixMatch / DeFixMatch.

Shards are read only through the public reader API (:func:`mien.data.reader.open_dataset`,
:func:`~mien.data.reader.shard_urls`, :func:`~mien.data.reader.iter_samples`). :class:`ShardFrameDataset` works
out its torch.distributed rank and DataLoader worker itself and passes them to ``iter_samples(node=, worker=)``,
because its epoch length (``len``) and per-worker frame cap depend on them.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import numpy as np
import torch

from mien.data.au.images import prepare_image
from mien.data.au.labelled import LabelledAUDataset, label_item
from mien.data.labels.facs import au_column_name, normalize_intensity

__all__ = ["SHARD_CROPS", "ShardAUDataset", "ShardFrameDataset", "same_root", "shard_face_crops"]

SHARD_CROPS = ("landmarks", "aligned")
"""How AU images are cut from ``mien prepare`` clips (:func:`shard_face_crops`)."""


def shard_face_crops(video: np.ndarray, landmarks: np.ndarray, size: int, crop: str = "landmarks",
                     crop_scale: float = 1.1) -> np.ndarray:
    """AU training crops from the frames of a ``mien prepare`` clip.

    Args:
        video: (T, S, S, 3) uint8 RGB aligned face crops (the ``mp4`` member).
        landmarks: (T, 478, 3) float32 landmarks in crop pixels (``landmarks.npy``).
        size: output side (the AU image size).
        crop: ``"landmarks"`` — square of ``crop_scale`` × the landmark box's longer side (the AU model's input
            contract, :func:`mien.models.au.features.face_crops`, as used at inference); ``"aligned"`` — the
            whole aligned crop resized (FFHQ-style framing, about 1.8× the landmark box: only for models that
            are run on ``mien prepare`` crops). Frames with non-finite landmarks fall back to ``"aligned"``.
        crop_scale: see ``crop``.

    Returns:
        (T, size, size, 3) uint8 RGB.

    Raises:
        ValueError: unknown ``crop``.
    """
    import cv2

    if crop not in SHARD_CROPS:
        raise ValueError(f"shard crop must be one of {', '.join(SHARD_CROPS)}, got {crop!r}")
    video = np.asarray(video)
    out = np.zeros((len(video), size, size, 3), np.uint8)
    ok = np.zeros(len(video), bool)
    if crop == "landmarks" and len(video):
        from mien.models.au.features import face_crops

        lm = np.asarray(landmarks, np.float32)[..., :2]
        ok = np.isfinite(lm).all((1, 2))
        if ok.any():
            boxes = np.concatenate([lm[ok].min(1), lm[ok].max(1)], -1)
            out[ok] = face_crops(list(video[ok]), boxes, scale=crop_scale, size=size)
    for i in np.nonzero(~ok)[0]:
        im = video[i]
        interp = cv2.INTER_AREA if im.shape[0] > size else cv2.INTER_LINEAR
        out[i] = im if im.shape[0] == size and im.shape[1] == size else cv2.resize(im, (size, size),
                                                                                     interpolation=interp)
    return out



def _facs_name(name: str) -> str:
    """``AU1``/``au01``/``AU12_L`` → ``AU01``/``AU12L`` (the names ``mien prepare --au-labels`` writes)."""
    return au_column_name(name) or name


def _shard_urls(info, keep_rows=None) -> list[str]:
    """Shard URLs of a dataset (manifest order, :func:`mien.data.reader.shard_urls`), only those holding a row of
    ``keep_rows`` (bool mask over the index) if given."""
    from mien.data.reader import shard_urls

    urls = shard_urls(info.root)
    if keep_rows is None:
        return urls
    wanted = set(info.index.loc[keep_rows, "shard"])
    return [u for u in urls if u.rstrip("/").rsplit("/", 1)[-1] in wanted]


class ShardAUDataset(LabelledAUDataset):
    """Labelled AU frames from a ``mien prepare --au-labels`` dataset (shards with ``au.npy``).

    Every frame of every clip with ``au.npy`` (every ``frame_step``-th frame) with at least one coded AU of
    ``au_names`` becomes one training image: the clip's aligned crop cut as ``crop`` says
    (:func:`shard_face_crops`) at ``image_size``. Labels: FACS values of ``au.npy`` as in :class:`~mien.data.au.AUCsvDataset`
    (``label_kind="intensity"``: intensity = value / 5, occurrence = value ≥ ``occurrence_threshold``;
    ``"binary"``: 0/1 occurrence, no intensity); NaN = not coded (masked). Subject = the sample's ``subject_id``
    (as a string), so :func:`mien.data.au.folds.subject_kfold` splits by the subjects of ``mien prepare`` (``--subjects``).

    The frames are decoded once, at construction, and kept **in memory** as uint8 (N × S² × 3 bytes: 100k frames
    at S = 64 ≈ 1.2 GB) — meant for labelled sets of modest size; raise ``frame_step`` (neighbouring frames at
    25 fps are near-duplicates) or ``max_frames`` for larger ones. Unlabelled frames stream instead
    (:class:`ShardFrameDataset`).

    Items are those of :class:`~mien.data.au.CKPlusAUDataset` (``image`` (3, S, S) float32 RGB [0, 1], ``occ``, ``occ_mask``,
    ``int`` [0, 1], ``int_mask`` (A,) float32, ``index``).

    Args:
        root: dataset root (local folder or fsspec URL).
        au_names: label columns (``AU1`` and ``AU01`` both name ``AU01``); None = the dataset's ``au_names``. The
            dataset's names are kept as given here.
        image_size: S. grayscale: convert to gray.
        label_kind, occurrence_threshold: as in :class:`~mien.data.au.AUCsvDataset`.
        crop, crop_scale: see :func:`shard_face_crops`.
        frame_step: keep every n-th clip frame.
        max_frames: stop after this many frames (None: all).

    Attributes:
        images: uint8 (N, S, S, 3) RGB; keys: N ``"<sample key>/<clip frame>"`` (also ``paths``);
        subjects: (N,) str; times: float64 (N,) source presentation time (s) of each frame.

    Raises:
        InputError: ``root`` is not a prepared dataset. ValueError: it has no AU labels, no labelled frame, or
        ``"binary"`` labels are not 0/1. KeyError: an AU of ``au_names`` is not in the dataset.
    """

    def __init__(self, root: str, au_names: Sequence[str] | None = None, image_size: int = 64,
                 label_kind: str = "intensity", occurrence_threshold: float = 1.0, crop: str = "landmarks",
                 crop_scale: float = 1.1, frame_step: int = 1, grayscale: bool = False,
                 max_frames: int | None = None):
        from mien.data.reader import iter_samples, open_dataset

        if label_kind not in ("intensity", "binary"):
            raise ValueError(f"label_kind must be 'intensity' or 'binary', got {label_kind!r}")
        if crop not in SHARD_CROPS:
            raise ValueError(f"shard crop must be one of {', '.join(SHARD_CROPS)}, got {crop!r}")
        info = open_dataset(str(root))
        have = list(info.manifest.get("au_names") or [])
        if not have:
            raise ValueError(f"{root}: no AU labels in this dataset (prepare it with `mien prepare --au-labels`)")
        names = list(au_names) if au_names else list(have)
        missing = [n for n in names if _facs_name(n) not in have]
        if missing:
            raise KeyError(f"{root}: no AU label(s) {missing} (the dataset has {', '.join(have)})")
        idx = info.index
        urls = _shard_urls(info, idx["has_au"].astype(bool) if "has_au" in idx.columns else None)
        step = max(1, int(frame_step))
        images, raw, subjects, keys, times = [], [], [], [], []
        n = 0
        for s in iter_samples(urls, audio=False):
            if max_frames is not None and n >= max_frames:
                break
            if "au.npy" not in s:
                continue
            meta = s["json"]
            cols = [list(meta.get("au_names") or have).index(_facs_name(x)) for x in names]
            au = np.asarray(s["au.npy"], np.float32)[:, cols]
            k = np.arange(0, len(au), step)
            k = k[np.isfinite(au[k]).any(1)]
            if max_frames is not None:
                k = k[:max_frames - n]
            if not len(k):
                continue
            images.append(shard_face_crops(s["mp4"][k], s["landmarks.npy"][k], image_size, crop, crop_scale))
            raw.append(au[k])
            subjects += [str(meta["subject_id"])] * len(k)
            keys += [f"{s['__key__']}/{j}" for j in k]
            times.append(np.asarray(s["times.npy"], np.float64)[k, 1])
            n += len(k)
        if not n:
            raise ValueError(f"{root}: no frame with a coded AU among {names}")
        raw = np.concatenate(raw)
        if label_kind == "intensity":
            inten = normalize_intensity(raw)
            occ = np.where(np.isfinite(raw), (raw >= occurrence_threshold).astype(np.float32), np.nan)
        else:
            fin = raw[np.isfinite(raw)]
            if fin.size and not np.isin(fin, (0.0, 1.0)).all():
                raise ValueError(f"{root}: label_kind='binary' needs 0/1 AU labels, found values in "
                                 f"[{fin.min()}, {fin.max()}] (use label_kind='intensity')")
            occ, inten = raw, np.full_like(raw, np.nan)
        super().__init__(keys, subjects, occ.astype(np.float32), inten, names, image_size, grayscale, False)
        self.images = np.concatenate(images)
        self.keys = self.paths
        self.times = np.concatenate(times)
        self.root = str(root)

    def __getitem__(self, i: int) -> dict:
        return {"image": prepare_image(self.images[i], self.image_size, self.grayscale),
                **label_item(self.occ[i], self.inten[i]), "index": i}


class ShardFrameDataset(torch.utils.data.IterableDataset):
    """Unlabelled face frames streamed from a ``mien prepare`` dataset, for FixMatch / DeFixMatch.

    Yields ``{"image": (3, S, S) float32 RGB [0, 1]}`` — every ``frame_step``-th frame of every clip (labels, if
    any, are ignored), cut as ``crop`` says (:func:`shard_face_crops`). Shards are read one clip at a time
    (WebDataset, fsspec: any root URL), in an order reshuffled every epoch, split across DataLoader workers and
    ``torch.distributed`` ranks (each frame read once per epoch overall), and frames pass through a shuffle
    buffer of ``buffer`` frames. ``len()`` is the number of frames one epoch yields on this rank (from the index;
    with ``max_frames`` each of the W workers stops after ⌈max_frames / W⌉, so the cap is approximate).

    Args:
        root: dataset root (local folder or fsspec URL).
        image_size: S. grayscale: convert to gray. crop, crop_scale: see :func:`shard_face_crops`.
        frame_step: keep every n-th clip frame.
        max_frames: frames per epoch (None: all).
        exclude_subjects: subject ids (as strings) whose clips are skipped (the validation subjects when the
            labelled and unlabelled sets come from the same dataset).
        shuffle: shuffle shards and frames. buffer: shuffle buffer size (frames). seed: shuffling seed.

    Raises:
        InputError: ``root`` is not a prepared dataset. ValueError: no frame left.
    """

    def __init__(self, root: str, image_size: int = 64, crop: str = "landmarks", crop_scale: float = 1.1,
                 frame_step: int = 1, grayscale: bool = False, max_frames: int | None = None,
                 exclude_subjects: Sequence[str] | None = None, shuffle: bool = True, buffer: int = 512,
                 seed: int = 0):
        from mien.data.reader import open_dataset

        if crop not in SHARD_CROPS:
            raise ValueError(f"shard crop must be one of {', '.join(SHARD_CROPS)}, got {crop!r}")
        info = open_dataset(str(root))
        self.exclude = {str(s) for s in (exclude_subjects or ())}
        idx = info.index
        keep = ~idx["subject_id"].astype(str).isin(self.exclude)
        self.urls = _shard_urls(info, keep)
        self.step = max(1, int(frame_step))
        self.total = int(sum(-(-int(f) // self.step) for f in idx.loc[keep, "frames"]))
        if max_frames is not None:
            self.total = min(self.total, int(max_frames))
        if not self.total:
            raise ValueError(f"{root}: no unlabelled frames (every subject excluded?)")
        self.root, self.image_size, self.crop, self.crop_scale = str(root), image_size, crop, crop_scale
        self.grayscale, self.max_frames, self.shuffle, self.buffer, self.seed = \
            grayscale, max_frames, shuffle, max(1, int(buffer)), seed
        self._epoch = 0

    @staticmethod
    def _node() -> tuple[int, int] | None:
        import torch.distributed as dist

        if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
            return dist.get_rank(), dist.get_world_size()
        return None

    def __len__(self) -> int:
        node = self._node()
        return -(-self.total // node[1]) if node else self.total

    def _frames(self, node, worker, rng):
        from mien.data.reader import iter_samples

        urls = list(self.urls)
        if self.shuffle:
            rng.shuffle(urls)  # the same permutation in every worker (same base seed): a split of all shards
        for s in iter_samples(urls, audio=False, node=node, worker=worker):
            if str(s["json"].get("subject_id")) in self.exclude:
                continue
            k = np.arange(0, len(s["mp4"]), self.step)
            yield from shard_face_crops(s["mp4"][k], s["landmarks.npy"][k], self.image_size, self.crop,
                                        self.crop_scale)

    def __iter__(self):
        wi = torch.utils.data.get_worker_info()
        if wi is not None:  # wi.seed = base seed (new every epoch, from the main process RNG) + worker id
            worker, base = (wi.id, wi.num_workers), wi.seed - wi.id
        else:
            worker, base = None, self._epoch
            self._epoch += 1
        node = self._node()
        parts = (worker[1] if worker else 1) * (node[1] if node else 1)
        cap = None if self.max_frames is None else -(-int(self.max_frames) // parts)
        shard_rng = np.random.default_rng([self.seed, int(base) % (2 ** 32)])
        frame_rng = np.random.default_rng([self.seed, int(base) % (2 ** 32), worker[0] if worker else 0])
        buf: list[np.ndarray] = []
        n = 0
        for im in self._frames(node, worker, shard_rng):
            if cap is not None and n >= cap:
                break
            n += 1
            if not self.shuffle:
                yield {"image": prepare_image(im, self.image_size, self.grayscale)}
                continue
            if len(buf) < self.buffer:
                buf.append(im)
                continue
            j = int(frame_rng.integers(len(buf)))
            buf[j], im = im, buf[j]
            yield {"image": prepare_image(im, self.image_size, self.grayscale)}
        if self.shuffle:
            for j in frame_rng.permutation(len(buf)):
                yield {"image": prepare_image(buf[j], self.image_size, self.grayscale)}


def same_root(a: str, b: str | None) -> bool:
    """Whether two dataset roots (paths or URLs) name the same dataset."""
    if not b:
        return False
    if "://" in str(a) or "://" in str(b):
        return str(a).rstrip("/") == str(b).rstrip("/")
    return os.path.realpath(a) == os.path.realpath(b)
