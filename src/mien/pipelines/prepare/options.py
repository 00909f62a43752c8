"""Options (:class:`PrepareOptions`, one dataclass: the API, the manifest's ``settings`` and the ``mien prepare``
flags) and the outcome (:class:`PrepareReport`) of :func:`mien.pipelines.prepare.prepare`."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

MODES = ("random", "all", "keywords", "scored", "dyadic")
DYADIC_FIELDS = ("react_root", "react_split", "dyadic_features", "end")
"""Options of the dyadic mode only (left out of other datasets' settings)."""
TRACK_POLICIES = ("single", "largest")


@dataclass
class PrepareOptions:
    """Options of :func:`prepare`; ``mien prepare``'s flags are generated from these fields and their entries
    below (mien.cli.options: ``clip_seconds`` → ``--clip-seconds``; field metadata for exceptions).

    Attributes:
        clip_seconds: clip length in seconds (T = round(clip_seconds · fps) frames).
        fps: clip frame rate; source frames are picked by presentation time (nearest previous).
        crop_size: side of the square face crop in pixels.
        margin: extra crop border as a fraction of the default half size (FFHQ-style crop when 0).
        smooth_frames: Gaussian σ (clip frames) for smoothing the crop transform over time (0: off).
        mode: "random", "all", "keywords", "scored" (face clips), or "dyadic": conversations of two people into a
            dyadic dataset for listener-reaction models (:mod:`mien.pipelines.prepare.dyadic`; inputs are CSVs of
            pairs ``session,speaker_video,listener_video`` or videos with two faces, or ``react_root``).
        clips_per_video: random mode: clips per video.
        stride_seconds: all/scored modes: distance between window starts (default: clip_seconds for "all",
            clip_seconds / 2 for "scored").
        top_k: scored mode: clips kept per video.
        w_expression: scored mode: weight of expression variation (mien.data.selection.score_windows).
        w_stability: scored mode: weight of head stability (mien.data.selection.score_windows).
        tokenizer: scored mode: an exported expression tokenizer folder (``mien export tokenizer``); expression
            variation is then measured on its per-frame expression tokens instead of aligned landmarks.
        seed: random mode seed (combined with the video key, so each video's choice is stable).
        transcripts: keywords mode: folder or URL holding ``<video stem>.json|.vtt|.srt``.
        keywords: keywords mode: words or phrases.
        offset_seconds: keywords mode: window start after the keyword (or end before it near the end).
        track_policy: "single" (exactly one face in every frame) or "largest" (the largest face's track).
        max_faces: faces tracked per frame (for the track policy check).
        min_face: smallest face (longer side of the landmark box, source px) kept.
        min_confidence: smallest face-detector score kept.
        subjects: CSV with columns ``video,subject`` (video = URI, file name or stem); default one subject
            per source video.
        audio: extract audio and audio features when the source has audio.
        egemaps: add eGeMAPS functionals (needs the optional ``opensmile`` package).
        crf: x264 quality of the crop videos (lower = better).
        shard_samples: most samples per shard file.
        max_side: frames larger than this (pixels, longer side) are downscaled before the face mesh sees them.
        detector: face detector: "short" (short range, faces within ~2 m) or "full" (full range: also small,
            distant faces).
        au_labels: per-frame FACS AU labels (DISFA style): a CSV with columns video, frame|time_sec, AU1, AU2, …
            or a folder of <video stem>.csv (mien.data.labels.au_csv.read_au_labels); clips of labelled videos
            get au.npy (T, A) float32.
        react_root: dyadic mode: an official REACT ``data`` folder to convert (split ``react_split``).
        react_split: dyadic mode: "train", "val" or "test".
        dyadic_features: dyadic mode: speaker feature groups (mien.data.react.features.FEATURE_GROUPS).
        end: dyadic mode: use only the first ``end`` seconds of each conversation.
    """

    clip_seconds: float = 2.0
    fps: float = 25.0
    crop_size: int = 256
    margin: float = 0.0
    smooth_frames: float = 2.0
    mode: str = field(default="random", metadata={"choices": MODES})
    clips_per_video: int = 4
    stride_seconds: float | None = field(default=None, metadata={"flag": "--stride", "metavar": "SEC"})
    top_k: int = 4
    w_expression: float = 1.0
    w_stability: float = 1.0
    tokenizer: str | None = field(default=None, metadata={"metavar": "PATH"})
    seed: int = 0
    transcripts: str | None = None
    keywords: tuple[str, ...] = ()
    offset_seconds: float = 1.0
    track_policy: str = field(default="single", metadata={"choices": TRACK_POLICIES})
    max_faces: int = 2
    min_face: float = 64.0
    min_confidence: float = 0.5
    subjects: str | None = None
    audio: bool = True
    egemaps: bool = False
    crf: int = 18
    shard_samples: int = 256
    max_side: int = 800
    detector: str = field(default="short", metadata={"choices": ("short", "full")})
    au_labels: str | None = field(default=None, metadata={"metavar": "PATH"})
    react_root: str | None = field(default=None, metadata={"metavar": "DIR"})
    react_split: str = field(default="val", metadata={"choices": ("train", "val", "test")})
    dyadic_features: tuple[str, ...] = ("presence", "attrs", "au", "emotion", "embedding", "pose", "gaze",
                                        "openness", "logmel", "mfcc")
    end: float | None = field(default=None, metadata={"metavar": "SEC"})

    def __post_init__(self) -> None:
        self.keywords = tuple(self.keywords)
        self.dyadic_features = tuple(self.dyadic_features)
        if self.mode not in MODES:
            raise ValueError(f"mode must be one of {', '.join(MODES)}, got {self.mode!r}")
        if self.track_policy not in TRACK_POLICIES:
            raise ValueError(f"track_policy must be single or largest, got {self.track_policy!r}")
        if self.clip_seconds <= 0 or self.fps <= 0:
            raise ValueError("clip_seconds and fps must be > 0")
        if self.crop_size < 16:
            raise ValueError(f"crop_size must be >= 16, got {self.crop_size}")
        if self.mode == "keywords" and (not self.keywords or not self.transcripts):
            raise ValueError("keywords mode needs --transcripts and --keywords")
        if self.clip_frames < 1:
            raise ValueError("clip_seconds * fps must be at least one frame")

    @property
    def clip_frames(self) -> int:
        return int(round(self.clip_seconds * self.fps))

    def settings(self) -> dict:
        """The options that determine the content of a dataset (compared on resume; ``au_labels`` only when
        set, so datasets prepared before that option existed still resume)."""
        out = dataclasses.asdict(self) | {"keywords": list(self.keywords)}
        if out["au_labels"] is None:
            del out["au_labels"]
        if self.mode != "dyadic":
            for k in DYADIC_FIELDS:
                del out[k]
        else:
            out["dyadic_features"] = list(self.dyadic_features)
        return out


@dataclass
class PrepareReport:
    """Outcome of :func:`prepare`.

    Attributes:
        ok: per prepared video: input, video_key, samples, shards, rejected (reason → count), seconds.
        failed: per skipped video: input, reason (corrupt, unreadable, no face, no keyword …).
        resumed: videos already done by an earlier run (not redone).
        samples: total samples in the dataset.
        rejected: rejected windows per reason, over all videos.
        source_seconds, wall_seconds: video duration handled by this run and its wall-clock time.
        no_au_labels: with ``au_labels``: prepared videos that have no labels (their clips carry no ``au.npy``).
    """

    ok: list[dict] = field(default_factory=list)
    failed: list[dict] = field(default_factory=list)
    resumed: int = 0
    samples: int = 0
    rejected: dict = field(default_factory=dict)
    source_seconds: float = 0.0
    wall_seconds: float = 0.0
    no_au_labels: list[str] = field(default_factory=list)


@dataclass
class VideoJob:
    """One unit of work of :func:`~mien.pipelines.prepare.run.process_video`: a source video and where it goes.

    Attributes:
        uri: source video (local path or fsspec URL).
        vkey: its video key (:func:`mien.data.store.video_key`).
        subject, subject_id: subject name and id (ids enumerate the sorted names of the run).
        options: the dataset's :class:`PrepareOptions`.
        output: dataset root (local folder or fsspec URL).
        au: the video's AU labels (:class:`~mien.data.labels.au_csv.AULabels`) or None.
    """

    uri: str
    vkey: str
    subject: str
    subject_id: int
    options: PrepareOptions
    output: str
    au: object = None

