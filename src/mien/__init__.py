"""mien: facial expression analysis and synthesis, from raw video to results.

Public API::

    import mien
    res = mien.analyze("video.mp4")          # -> mien.AnalysisResult
    res.to_parquet("out.parquet")
    res2 = mien.read_results("out.parquet")
    of = mien.read_openface("openface.csv")
    ds = mien.read_results_dataset("out/", filters=[("yaw_deg", ">", 20)])   # `mien analyze … -o out/`
    rx = mien.react("speaker.mp4", model="reaction_model/", n=10)   # -> mien.ReactionResult (10, T, 25)
    for frame in mien.reenact("portrait.jpg", "driving.mp4", model="warp"):  # (H, W, 3) uint8 RGB frames
        ...
"""

from mien._version import __version__
from mien.errors import InputError, MienError
from mien.models.registry import create_model, list_models
from mien.pipelines.analyze import AnalyzeOptions, analyze
from mien.pipelines.react import ReactOptions, react
from mien.pipelines.reenact_video import ReenactOptions, reenact
from mien.results import AnalysisResult, read_openface, read_results
from mien.results.dataset import read_results_dataset
from mien.results.reaction import ReactionResult, read_reactions

__all__ = [
    "AnalysisResult",
    "AnalyzeOptions",
    "InputError",
    "MienError",
    "ReactOptions",
    "ReactionResult",
    "ReenactOptions",
    "__version__",
    "analyze",
    "create_model",
    "list_models",
    "react",
    "read_openface",
    "read_reactions",
    "read_results",
    "read_results_dataset",
    "reenact",
]
