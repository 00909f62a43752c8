"""The one owner of the prepared-dataset schema: shard members, per-sample metadata, index columns, the
per-video completion marker and :data:`SCHEMA_VERSION`.

The shard writer (:mod:`mien.data.shards`), the reader (:mod:`mien.data.reader`), ``finalize``
(:mod:`mien.pipelines.prepare.finalize`) and ``mien dataset info|verify`` all read these tables instead of
restating them. One sample = one clip of one face, key ``<video key>_<start grid frame, 6 digits>``
(T = clip frames, S = crop size in pixels, K = 478 landmarks, A = AU columns).

A second dataset kind, ``dyadic`` (manifest ``"kind": "dyadic"``; the clip kind has no ``kind`` key), holds one
sample per dyad of two people for listener-reaction models: :data:`DYADIC_MEMBERS`, written and read by
:mod:`mien.data.react.shards`.

Adding a member: add a :class:`Member` to :data:`MEMBERS` (``required=False`` unless every sample has it), write
it in :func:`mien.pipelines.prepare.encode.write_clips`, bump :data:`SCHEMA_VERSION`'s minor number; readers
decode it by its suffix (``.npy`` → array) and ``mien dataset info`` lists it from the manifest.
"""

from __future__ import annotations

from dataclasses import dataclass

SCHEMA_VERSION = "1.0"
"""Version of the dataset layout (manifest, index, shards); the major number changes when readers must."""


@dataclass(frozen=True)
class Member:
    """One member (file) of a sample in a shard tar.

    Attributes:
        name: member suffix in the tar (``<key>.<name>``), e.g. ``landmarks.npy``.
        description: type, shape, units (written to ``manifest.json`` ``members``).
        required: every sample has it (a sample without it is incomplete: damaged shard).
    """

    name: str
    description: str
    required: bool = True


MEMBERS: tuple[Member, ...] = (
    Member("mp4", "H.264 crop video (T, S, S, 3)"),
    Member("affine.npy", "(T, 2, 3) float32 source->crop"),
    Member("landmarks.npy", "(T, 478, 3) float32 crop px"),
    Member("pose.npy", "(T, 6) float32 yaw, pitch, roll deg, tx, ty, tz mm"),
    Member("openness.npy", "(T, 3) float32 ear_left, ear_right, mouth_open"),
    Member("times.npy", "(T, 2) float64 clip time, source presentation time (s)"),
    Member("flac", "16 kHz mono audio (if has_audio)", required=False),
    Member("logmel.npy", "(T, 80) float32 dB", required=False),
    Member("mfcc.npy", "(T, 13) float32", required=False),
    Member("json", "sample metadata"),
    Member("au.npy", "(T, A) float32 FACS AU intensity 0-5 (or 0/1 occurrence) of the source frame shown, "
                     "NaN = not coded; columns = au_names (only clips of labelled videos, --au-labels)",
           required=False),
    Member("egemaps.npy", "(88,) float32 eGeMAPSv02 functionals of the clip (--egemaps)", required=False),
)
"""Every member a sample may have, in manifest order."""

REQUIRED_MEMBERS = frozenset(m.name for m in MEMBERS if m.required)


def manifest_members(egemaps: bool = False) -> dict[str, str]:
    """``manifest.json`` ``members``: {member: description} (``egemaps.npy`` only when prepared with it)."""
    return {m.name: m.description for m in MEMBERS if m.name != "egemaps.npy" or egemaps}


META_FIELDS: tuple[str, ...] = (
    "schema_version", "key", "source", "video_key", "subject", "subject_id", "start_sec", "end_sec", "fps",
    "frames", "crop_size", "crop", "has_audio", "audio_sample_rate", "mode", "keyword", "score", "face_id", "has_au",
)
"""Keys of every sample's ``json`` member; clips with AU labels add ``au_names`` and ``au_coded_frames``."""
META_AU_FIELDS: tuple[str, ...] = ("au_names", "au_coded_frames")


def check_meta(meta: dict) -> dict:
    """``meta`` unchanged when its keys are exactly :data:`META_FIELDS` (plus :data:`META_AU_FIELDS` when
    ``has_au``).

    Raises:
        ValueError: a field is missing or not in the schema (the writer and the schema disagree).
    """
    want = set(META_FIELDS) | (set(META_AU_FIELDS) if meta.get("has_au") else set())
    if set(meta) != want:
        raise ValueError(f"sample meta does not match mien.data.schema.META_FIELDS: missing "
                         f"{sorted(want - set(meta))}, unknown {sorted(set(meta) - want)}")
    return meta

INDEX_COLUMNS: tuple[tuple[str, str], ...] = (
    ("key", "string"), ("shard", "string"), ("source", "string"), ("video_key", "string"), ("subject", "string"),
    ("subject_id", "int64"), ("start_sec", "float64"), ("end_sec", "float64"), ("fps", "float64"),
    ("frames", "int64"), ("has_audio", "bool"), ("mode", "string"), ("keyword", "string"), ("score", "float64"),
    ("crop_size", "int64"), ("has_au", "bool"),
)
"""``index.parquet`` columns (name, Arrow type), one row per sample; all but ``shard`` come from the meta."""


def index_row(meta: dict, shard: str) -> dict:
    """The index row of a sample from its ``json`` meta and the shard file name it was written to."""
    return {c: shard if c == "shard" else meta.get(c, False if c == "has_au" else None) for c, _ in INDEX_COLUMNS}


def index_schema():
    """The ``pyarrow.Schema`` of ``index.parquet`` (with the schema version in its metadata)."""
    import pyarrow as pa

    return pa.schema([pa.field(c, getattr(pa, "bool_" if t == "bool" else t)()) for c, t in INDEX_COLUMNS],
                     metadata={"mien": f'{{"schema_version": "{SCHEMA_VERSION}"}}'})


SHARD_FIELDS: tuple[str, ...] = ("name", "samples", "bytes", "video", "sha256")
"""Per-shard entry of the marker and the manifest: file name, sample count, size in bytes, the video key it
holds (one video per shard) and the SHA-256 of the file (absent in datasets prepared before it was recorded)."""


def new_marker(uri: str, vkey: str, subject: str, subject_id: int, au_names: list[str] | None) -> dict:
    """A per-video completion marker (``done/<video key>.json``), before its video is processed.

    Fields: input (source URI), video_key, subject, subject_id, status ("ok" | "failed"), reason, samples
    (index rows), shards (:data:`SHARD_FIELDS` entries), rejected (reason → count), candidates,
    source_seconds, has_audio, models (landmark model files), has_au, au_names; ``seconds`` is added last.
    The options a video was prepared with are the dataset's ``settings`` (``settings.json``, manifest).
    """
    return {"input": uri, "video_key": vkey, "subject": subject, "subject_id": subject_id, "status": "ok",
            "reason": "", "samples": [], "shards": [], "rejected": {}, "candidates": 0, "source_seconds": 0.0,
            "has_audio": False, "models": {}, "has_au": au_names is not None, "au_names": list(au_names or [])}


# ------------------------------------------------------------------------------------------ dyadic kind
DYADIC_SCHEMA_VERSION = "1.0"
"""Version of the dyadic dataset layout (``manifest.json`` ``schema_version`` when ``kind`` is "dyadic")."""
DYADIC_MEMBERS: tuple[Member, ...] = (
    Member("a.features.npy", "(T, D) float32 speaker features of person a (columns: manifest feature_names)"),
    Member("b.features.npy", "(T, D) float32 speaker features of person b"),
    Member("a.attrs.npy", "(T, 25) float32 REACT attributes of person a (mien.metrics.react.REACT_ATTRIBUTES; "
                          "NaN = not available)"),
    Member("b.attrs.npy", "(T, 25) float32 REACT attributes of person b"),
    Member("times.npy", "(T,) float64 frame time in s (both people are sampled at these times)"),
    Member("json", "dyad metadata: DYADIC_META_FIELDS"),
)
"""Members of a dyadic sample (one dyad: persons a and b on one frame grid)."""
DYADIC_META_FIELDS: tuple[str, ...] = ("schema_version", "session", "key", "fps", "frames", "source_a", "source_b",
                                       "attrs_source", "feature_names")
"""Keys of a dyadic sample's ``json`` member. attrs_source: "react-csv" (official Emotion CSVs) or "mien"
(:func:`mien.data.react.features.attributes_25`)."""


def required_members(kind: str | None) -> frozenset[str]:
    """Members every sample of a dataset kind has ("dyadic", or None/"clips" for face clips)."""
    members = DYADIC_MEMBERS if kind == "dyadic" else MEMBERS
    return frozenset(m.name for m in members if m.required)
