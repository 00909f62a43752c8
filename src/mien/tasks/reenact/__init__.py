"""One-shot face reenactment training (``mien train reenact``): :class:`ReenactTask` (stages base → hr →
student), :class:`ReenactDataModule` (self- and cross-reenactment pairs from ``mien prepare`` shards)."""

from mien.tasks.reenact.config import OptimConfig, ReenactWeights
from mien.tasks.reenact.data import PairDataset, ReenactDataModule, cross_permutation
from mien.tasks.reenact.task import STAGES, ReenactTask

__all__ = ["STAGES", "OptimConfig", "PairDataset", "ReenactDataModule", "ReenactTask", "ReenactWeights",
           "cross_permutation"]
