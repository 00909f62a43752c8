"""``mien reenact``: animate the face of a source portrait with a driving video (or edit a still portrait).

Pipeline: the source frame (an image, or frame ``source_frame`` of a video) → its face crop (cut as ``mien
prepare`` cuts shard crops, :class:`~mien.pipelines.reenact.FaceCropper`) → the reenactor's source state; then
per driving frame (streamed, never loaded whole): face crop, landmarks and head pose → the reenactor
(:mod:`mien.pipelines.reenact`: a trained model, ``warp`` or ``copy``) → the output crop, pasted back into the
full source frame with a feathered face mask (or the crop alone), optionally side by side
``source | driving | output``. The driving video's audio is kept (:func:`mien.io.mux.mux_audio`).

Driving frames without a face keep the last good motion (frames before the first face show the source
unchanged); they are counted in :class:`ReenactReport` and reported, never dropped.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field

import cv2
import numpy as np

from mien.errors import InputError
from mien.io.video import Frame
from mien.pipelines.reenact import FaceCrop, FaceCropper, load_reenactor, parse_edit

IMAGE_OUTPUTS = (".png", ".jpg", ".jpeg", ".webp", ".bmp")


@dataclass
class ReenactOptions:
    """Options of :func:`reenact` / :func:`reenact_video` (the flags of ``mien reenact``).

    Attributes:
        model: the reenactor: a folder written by ``mien export reenact``, "warp" (classical piecewise-affine
            mesh warp of the source, OpenCV) or "copy" (the unchanged source). Default "warp": no trained
            weights ship with mien yet (they ship only once a model beats the warp baseline on held-out AKD
            and AED; see ``mien evaluate reenact``).
        source_frame: frame index of a source video to use as the portrait.
        absolute: absolute motion (the driver's landmarks/pose/expression) instead of relative motion (the
            driver's change since its reference frame, applied to the source's own).
        reference: the driver's reference frame for relative motion: "first" (its first face frame, as FOMM and
            LivePortrait) or "best" (the driving frame whose face is nearest the source's in shape and
            expression, :func:`mien.face.warp.shape_distance` — after FOMM's ``--find_best_frame``; a pre-pass reads
            the driving video once more; not for a webcam). "best" helps when the driver starts mid-expression.
        paste_back: paste the output face into the full source frame with a feathered face mask (off: the
            S × S face crop).
        side_by_side: write source | driving | output panels side by side.
        edit: expression edit along AU directions, e.g. AU12=+0.8,AU04=-0.5 (AU intensity change): a trained
            model's learned expression-latent directions, or for "warp" the mesh displacement of py-feat's linear
            AU → mesh model (20 AUs); without a driving video the still source portrait is edited.
        start, end: time window of the driving video in seconds.
        size: crop side in px for warp/copy (a trained model has its own; default 256, as mien prepare).
        still_frames: frames written for an edit of a still portrait to a video: the edit ramps from 0 to full.
        batch_size: driving frames per reenactor call.
        device: torch device of a trained model ("cpu", "cuda").
        crf: x264 quality of the output video (lower = better).
        progress: show a progress bar.
    """

    model: str = field(default="warp", metadata={"metavar": "PATH|warp|copy"})
    source_frame: int = field(default=0, metadata={"metavar": "N"})
    absolute: bool = False
    reference: str = field(default="first", metadata={"choices": ("first", "best")})
    paste_back: bool = True
    side_by_side: bool = False
    edit: str | None = field(default=None, metadata={"metavar": "AU=X,…"})
    start: float | None = field(default=None, metadata={"metavar": "SEC"})
    end: float | None = field(default=None, metadata={"metavar": "SEC"})
    size: int | None = field(default=None, metadata={"metavar": "PX"})
    still_frames: int = field(default=50, metadata={"metavar": "N"})
    batch_size: int = field(default=8, metadata={"metavar": "N"})
    device: str = "cpu"
    crf: int = 18
    progress: bool = field(default=False, metadata={"cli": False})

    def __post_init__(self) -> None:
        if self.source_frame < 0:
            raise ValueError(f"source_frame must be >= 0, got {self.source_frame}")
        if self.reference not in ("first", "best"):
            raise ValueError(f"reference must be 'first' or 'best', got {self.reference!r}")
        if self.absolute and self.reference != "first":
            raise ValueError("--reference best is for relative motion; drop --absolute")
        if self.batch_size < 1 or self.still_frames < 1:
            raise ValueError("batch_size and still_frames must be >= 1")
        parse_edit(self.edit)


@dataclass
class ReenactReport:
    """What a reenactment did.

    Attributes:
        output: written file ("" for the Python iterator). model: the reenactor's name.
        frames: output frames. face_gaps: driving frames without a face (they kept the last good motion, or
            showed the source before the first face). width, height: output size px; fps: output frame rate.
        audio: the driving video's audio was added. relative: relative motion was used. seconds: wall time.
    """

    output: str = ""
    model: str = ""
    frames: int = 0
    face_gaps: int = 0
    width: int = 0
    height: int = 0
    fps: float = 25.0
    audio: bool = False
    relative: bool = True
    seconds: float = 0.0
    meta: dict = field(default_factory=dict)


def read_source(source, frame: int = 0) -> np.ndarray:
    """The portrait frame: an image file, frame ``frame`` of a video, or an (H, W, 3) uint8 array."""
    if isinstance(source, np.ndarray):
        return source
    from mien.io.video import open_source

    src = open_source(source)
    for fr in src:
        if fr.index == frame:
            return fr.image
    raise InputError(str(source), f"has no frame {frame}")


def face_mask(crop: FaceCrop, size: int, grow: float = 1.08, feather: float = 0.05) -> np.ndarray:
    """Feathered face mask float32 (S, S) in [0, 1]: the convex hull of the 468 mesh points grown by ``grow``
    about its centre, blurred with a Gaussian of σ = ``feather`` · S."""
    pts = crop.landmarks[:468, :2].astype(np.float64)
    c = pts.mean(0)
    hull = cv2.convexHull(((pts - c) * grow + c).astype(np.float32)).astype(np.int32)
    m = np.zeros((size, size), np.float32)
    cv2.fillConvexPoly(m, hull, 1.0)
    return cv2.GaussianBlur(m, (0, 0), feather * size)


class Paster:
    """Paste S × S output crops back into the source frame through the inverse of the source crop's affine."""

    def __init__(self, frame: np.ndarray, crop: FaceCrop, size: int):
        self.frame = frame
        h, w = frame.shape[:2]
        self.A, self.wh = crop.affine, (w, h)
        m = cv2.warpAffine(face_mask(crop, size), self.A, self.wh, flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP)
        ys, xs = np.nonzero(m > 1e-3)
        self.box = (ys.min(), ys.max() + 1, xs.min(), xs.max() + 1) if len(ys) else (0, h, 0, w)
        y0, y1, x0, x1 = self.box
        self.mask = m[y0:y1, x0:x1, None]

    def __call__(self, out: np.ndarray) -> np.ndarray:
        back = cv2.warpAffine(out, self.A, self.wh, flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
                              borderMode=cv2.BORDER_REPLICATE)
        y0, y1, x0, x1 = self.box
        res = self.frame.copy()
        blend = self.mask * back[y0:y1, x0:x1] + (1 - self.mask) * self.frame[y0:y1, x0:x1]
        res[y0:y1, x0:x1] = np.clip(blend + 0.5, 0, 255).astype(np.uint8)
        return res


def _fit_height(img: np.ndarray, h: int) -> np.ndarray:
    if img.shape[0] == h:
        return img
    w = max(round(img.shape[1] * h / img.shape[0]), 1)
    return cv2.resize(img, (w, h), interpolation=cv2.INTER_AREA if img.shape[0] > h else cv2.INTER_LINEAR)


class Reenactment:
    """Iterator of output frames of one reenactment (what :func:`reenact` returns).

    Yields uint8 (H, W, 3) RGB frames: the full source frame (paste-back), the S × S crop, or the side-by-side
    panels. :attr:`report` (a :class:`ReenactReport`) is complete once the iterator is exhausted.

    Args:
        source, driving, options, reenactor: as :func:`reenact` (``reenactor``: an already loaded one, else
            ``options.model`` is loaded).
        edits: per-frame edits of the still portrait (no driving video, no ``options.edit``): one output frame
            per {AU: strength} dict, instead of the ``options.edit`` ramp (``mien react --listener-image``).
        fps: frame rate recorded in :attr:`report` (default: the driving video's, else 25).
        on_frame: called for each output frame before it is yielded, as :func:`mien.analyze`'s ``on_frame``:
            ``on_frame(frame, report)`` with the driving :class:`~mien.io.video.Frame` (for a still portrait: frame
            k of the source at k / fps s) and the :attr:`report` so far (``report.frames`` counts this one);
            return True to stop after this frame (the output ends there; a webcam is stopped). An exception it
            raises (e.g. a cancelled job) ends the iteration with it: :func:`reenact_video` then writes nothing.

    Attributes:
        reference: with ``options.reference == "best"``, the driving frame's crop chosen by :func:`best_reference`
            (found here, at construction: a whole pass over the driving video, before any output frame and
            without ``on_frame``; its time is included in ``report.seconds``); None otherwise.
    """

    def __init__(self, source, driving=None, options: ReenactOptions | None = None, reenactor=None, *,
                 edits: Sequence[Mapping[str, float]] | None = None, fps: float | None = None,
                 on_frame: Callable[[Frame, ReenactReport], bool | None] | None = None):
        self.o = o = options or ReenactOptions()
        self.on_frame = on_frame
        self.edit = parse_edit(o.edit)
        self.edits = edits
        if edits is not None and (driving is not None or self.edit):
            raise ValueError("per-frame edits animate a still portrait: give no driving video and no --edit")
        if driving is None and not self.edit and edits is None:
            raise ValueError("no driving video: give DRIVING, or --edit to edit the still portrait")
        self.source_path = source if not isinstance(source, np.ndarray) else "<array>"
        self.frame = read_source(source, o.source_frame)
        self.r = reenactor if reenactor is not None else load_reenactor(o.model, o.device, o.size)
        if (self.edit or edits is not None) and not self.r.au_directions:
            raise ValueError(f"--edit needs a model with AU directions (model.au_directions); reenactor "
                             f"{self.r.name!r} has none")
        h, w = self.frame.shape[:2]
        cropper = FaceCropper(w, h, self.r.size, self.r.margin, static=True)
        try:
            self.src = cropper(self.frame)
        finally:
            cropper.close()
        if self.src is None:
            where = f" (frame {o.source_frame})" if o.source_frame else ""
            raise InputError(str(self.source_path), f"no face found in the source portrait{where}")
        self.state = self.r.encode_source(self.src)
        self.paster = Paster(self.frame, self.src, self.r.size) if o.paste_back else None
        self.driving = driving
        self.drv = None
        self.reference: FaceCrop | None = None
        t_pre = time.perf_counter()
        if driving is not None:
            from mien.io.video import WEBCAM_PREFIX, open_source

            if o.reference == "best" and str(driving).startswith(WEBCAM_PREFIX):
                raise InputError(str(driving), "--reference best reads the driving video twice: give a video file, "
                                               "not a webcam")
            self.drv = open_source(driving, o.start, o.end)
            if self.drv.kind == "image":
                raise InputError(str(driving), "the driving input must be a video or webcam:N, not an image")
            if o.reference == "best":
                self.reference = best_reference(driving, self.src, self.r.size, self.r.margin, o.start, o.end)
        fps = fps or (self.drv.info.fps if self.drv is not None else None) or 25.0
        self.report = ReenactReport(model=self.r.name, fps=float(fps), relative=not o.absolute)
        self._pre_seconds = time.perf_counter() - t_pre  # the --reference best pre-pass, counted in report.seconds

    @property
    def total(self) -> int | None:
        """Expected number of output frames (None when unknown, e.g. a webcam)."""
        if self.drv is None:
            return self.o.still_frames if self.edits is None else len(self.edits)
        info = self.drv.info
        if not info.duration_sec or not info.fps:
            return None
        t0, t1 = self.o.start or 0.0, min(self.o.end if self.o.end is not None else 1e18, info.duration_sec)
        return max(int(round((t1 - t0) * info.fps)), 0)

    def _compose(self, out: np.ndarray, drv_image: np.ndarray, drv_crop: FaceCrop | None) -> np.ndarray:
        o = self.o
        img = self.paster(out) if self.paster is not None else out
        if not o.side_by_side:
            return img
        h = img.shape[0]
        left = self.frame if self.paster is not None else self.src.image
        mid = drv_image if self.paster is not None else (drv_crop.image if drv_crop is not None
                                                          else np.zeros_like(out))
        return np.concatenate([_fit_height(left, h), _fit_height(mid, h), img], 1)

    def _still(self) -> Iterator[tuple[Frame, np.ndarray]]:
        n = self.o.still_frames
        edits = self.edits if self.edits is not None else (
            {a: v * (1.0 if n == 1 else k / (n - 1)) for a, v in self.edit.items()} for k in range(n))
        for k, e in enumerate(edits):
            out = self.r.animate(self.state, [self.src], self.src, e)[0]
            yield Frame(k, k / self.report.fps, self.frame), self._compose(out, self.frame, self.src)

    def __iter__(self) -> Iterator[np.ndarray]:
        t0 = time.perf_counter()
        rep = self.report
        gen = self._still() if self.drv is None else self._drive()
        try:
            for fr, img in gen:
                rep.frames += 1
                rep.height, rep.width = img.shape[:2]
                stop = self.on_frame is not None and self.on_frame(fr, rep) is True
                yield img
                if stop:
                    if hasattr(self.drv, "stop"):  # a webcam
                        self.drv.stop()
                    break
        finally:
            gen.close()
        rep.seconds = time.perf_counter() - t0 + self._pre_seconds
        if self.drv is not None:
            rep.meta = {"frames_decoded": self.drv.frames_decoded, "corrupt_frames": self.drv.corrupt_frames}

    def _drive(self) -> Iterator[np.ndarray]:
        o, rep = self.o, self.report
        info = self.drv.info
        cropper = FaceCropper(info.width, info.height, self.r.size, self.r.margin, static=False)
        ref, last = self.reference, None
        batch: list[tuple[Frame, FaceCrop | None]] = []

        def flush():
            with_face = [c for _, c in batch if c is not None]
            outs = iter(self.r.animate(self.state, with_face, None if o.absolute else ref, self.edit or None)
                        if with_face else ())
            for fr, c in batch:
                yield fr, self._compose(next(outs) if c is not None else self.src.image, fr.image, c)
            batch.clear()

        try:
            for fr in self.drv:
                crop = cropper(fr.image, fr.index)
                if crop is None:
                    rep.face_gaps += 1
                    crop = last
                else:
                    last = crop
                    ref = ref if ref is not None else crop
                batch.append((fr, crop))
                if len(batch) >= o.batch_size:
                    yield from flush()
            yield from flush()
        finally:
            cropper.close()


def best_reference(driving, source: FaceCrop, size: int, margin: float = 0.0, start: float | None = None,
                   end: float | None = None) -> FaceCrop | None:
    """The driving frame whose face is nearest ``source``'s in shape and expression (least
    :func:`mien.face.warp.shape_distance` over the 468 mesh points, in the source crop's px), cut as the
    reenactment's own pass cuts it (:class:`~mien.pipelines.reenact.FaceCropper`, video mode): FOMM's
    ``--find_best_frame`` (Siarohin et al., NeurIPS 2019; FOMM removes position and size, this also in-plane
    rotation). Streams the video once; keeps one crop.

    Args:
        driving: driving video path (not a webcam). source: the source portrait's crop (its 468 mesh points are
            compared). size, margin: the reenactor's crop side (px) and margin, as the reenactment cuts its crops.
        start, end: the driving video's time window in seconds (as the reenactment reads it).

    Returns:
        That frame's :class:`~mien.pipelines.reenact.FaceCrop`, or None when no driving frame has a face (the
        reenactment then falls back to the first face frame).

    Raises:
        InputError: unreadable driving video.
    """
    from mien.face.warp import shape_distance
    from mien.io.video import open_source

    drv = open_source(driving, start, end)
    cropper = FaceCropper(drv.info.width, drv.info.height, size, margin, static=False)
    best, best_d = None, np.inf
    try:
        for fr in drv:
            crop = cropper(fr.image, fr.index)
            if crop is not None:
                d = shape_distance(source.landmarks[:468], crop.landmarks[None, :468])[0]
                if d < best_d:
                    best, best_d = crop, d
    finally:
        cropper.close()
    return best


def reenact(source, driving=None, model="warp", options: ReenactOptions | None = None, *,
            on_frame: Callable[[Frame, ReenactReport], bool | None] | None = None, **kw) -> Reenactment:
    """Animate the face of ``source`` with the motion of ``driving``: an iterator of output frames.

    Args:
        source: portrait image/video path (frame ``source_frame``), or an RGB uint8 (H, W, 3) array.
        driving: driving video path or ``"webcam:N"``; None edits the still portrait (needs ``edit``).
        model: "warp" (default), "copy", an exported model folder (``mien export reenact``), or a loaded
            model / :class:`~mien.pipelines.reenact.Reenactor`.
        options: :class:`ReenactOptions`; ``kw`` overrides its fields (e.g. ``absolute=True``).
        on_frame: per output frame ``on_frame(frame, report)``; True stops (see :class:`Reenactment`).

    Returns:
        :class:`Reenactment`, iterating uint8 (H, W, 3) RGB frames: the source frame with the reenacted face
        pasted back (H, W = the source's), or S × S crops (``paste_back=False``), or the three panels side by
        side; one per driving frame, at the driving video's frame rate (``.report.fps``).

    Raises:
        InputError: unreadable source/driving input, no face in the source portrait, or ``reference="best"`` with
            a webcam.
        ValueError: bad options (e.g. ``reference="best"`` with ``absolute``); ``edit`` with a reenactor that has no
            AU directions.
    """
    import dataclasses

    o = dataclasses.replace(options or ReenactOptions(), **kw)
    reenactor = None
    if isinstance(model, str | os.PathLike):
        o = dataclasses.replace(o, model=os.fspath(model))
    else:
        reenactor = load_reenactor(model, o.device)
    return Reenactment(source, driving, o, reenactor, on_frame=on_frame)


def _nonempty(frames: Iterator[np.ndarray], driving) -> Iterator[np.ndarray]:
    n = 0
    for img in frames:
        n += 1
        yield img
    if n == 0:
        raise InputError(str(driving), "no driving frame in the given time window")


def reenact_video(source, driving, output: str | os.PathLike, options: ReenactOptions | None = None, *,
                  on_frame: Callable[[Frame, ReenactReport], bool | None] | None = None) -> ReenactReport:
    """Write :func:`reenact`'s frames to ``output`` (an MP4 with the driving video's audio; or an image for a
    still-portrait edit with an image suffix), atomically, with a progress bar when ``options.progress``.

    ``on_frame(frame, report)`` is called per output frame (:class:`Reenactment`): True ends the video after that
    frame (it is written, shorter); an exception it raises (a cancelled job) propagates and leaves no output file.

    Returns:
        :class:`ReenactReport` (``output`` set).
    """
    import dataclasses

    from mien.io.atomic import atomic_output
    from mien.io.writer import write_video

    o = options or ReenactOptions()
    output = os.fspath(output)
    as_image = os.path.splitext(output)[1].lower() in IMAGE_OUTPUTS
    if as_image:
        if driving is not None:
            raise ValueError(f"{output}: a driving video gives a video; use an .mp4 output")
        o = dataclasses.replace(o, still_frames=1)
    run = Reenactment(source, driving, o, on_frame=on_frame)
    frames = iter(run)
    if o.progress:
        from tqdm import tqdm

        frames = tqdm(frames, total=run.total, unit="frame", desc="reenact", dynamic_ncols=True, leave=False)
    if as_image:
        from PIL import Image

        with atomic_output(output) as tmp:
            Image.fromarray(next(frames)).save(tmp)
    else:
        webcam = driving is not None and str(driving).startswith("webcam:")
        _, audio = write_video(_nonempty(frames, driving), output, run.report.fps, crf=o.crf,
                               audio_from=None if driving is None or webcam else driving, audio_start=o.start,
                               keep_on_interrupt=webcam)
        run.report.audio = audio
    run.report.output = output
    return run.report


__all__ = ["ReenactOptions", "ReenactReport", "Reenactment", "face_mask", "reenact", "reenact_video"]
