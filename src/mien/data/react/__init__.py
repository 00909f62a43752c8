"""Dyadic (speaker–listener) data for listener-reaction generation (REACT / UniFaRN, seed 4).

- :mod:`.layout`: the official REACT 2023/2024 ``data`` folder (split lists, ``Emotion`` CSVs of the 25
  attributes, appropriateness matrices), roles mirrored as the official loaders do.
- :mod:`.features`: per-frame speaker features and the 25 REACT attributes from mien's analysis and audio.
- :mod:`.shards`: the ``dyadic`` dataset kind (one shard per dyad through :mod:`mien.data.shards`),
  :func:`load_appropriateness`, :func:`speaker_feature_names`; :mod:`.dataset`: the training dataset
  :class:`DyadicDataset` (PyTorch; imported on first use, so the rest works without torch).

``mien prepare --mode dyadic`` (:mod:`mien.pipelines.prepare.dyadic`) writes these datasets from pairs of
videos, two-face videos or the official layout.
"""

from mien.data.react.features import (
    ATTRIBUTES_FROM_MIEN,
    DEFAULT_FEATURES,
    FEATURE_GROUPS,
    attributes_25,
    audio_features,
    feature_columns,
    frame_grid,
    speaker_features,
)
from mien.data.react.layout import (
    ReactClip,
    ReactDyad,
    ReactSplit,
    read_appropriateness,
    read_emotion_csv,
    read_split,
)
from mien.data.react.shards import (
    DYADIC_MEMBERS,
    appropriateness_from_speakers,
    load_appropriateness,
    speaker_feature_names,
)
from mien.metrics.react import REACT_ATTRIBUTES

__all__ = [
    "ATTRIBUTES_FROM_MIEN",
    "DEFAULT_FEATURES",
    "DYADIC_MEMBERS",
    "FEATURE_GROUPS",
    "REACT_ATTRIBUTES",
    "DyadicDataset",
    "ReactClip",
    "ReactDyad",
    "ReactSplit",
    "appropriateness_from_speakers",
    "attributes_25",
    "audio_features",
    "feature_columns",
    "frame_grid",
    "load_appropriateness",
    "read_appropriateness",
    "read_emotion_csv",
    "read_split",
    "speaker_feature_names",
    "speaker_features",
]


def __getattr__(name):
    if name == "DyadicDataset":
        from mien.data.react.dataset import DyadicDataset

        return DyadicDataset
    raise AttributeError(name)
