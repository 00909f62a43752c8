"""SMIRK / TEASER training on mien's face models (``mien train face3d fit --config smirk-tiny|teaser-tiny|smirk|
teaser``): :class:`Face3DTask`, its configuration (:mod:`.config`), losses (:mod:`.losses`) and image-folder data
(:mod:`.data`; mien shards come through :class:`mien.data.datamodule.ClipDataModule`)."""

from mien.tasks.face3d.config import CycleConfig, Face3DOptim, Face3DWeights
from mien.tasks.face3d.data import Face3DImageDataModule, ImageFaceDataset, load_image_faces
from mien.tasks.face3d.losses import FaceApiFeatures, augment_expressions, expression_templates, landmark_loss
from mien.tasks.face3d.task import Face3DTask

__all__ = ["CycleConfig", "Face3DImageDataModule", "Face3DOptim", "Face3DTask", "Face3DWeights", "FaceApiFeatures",
           "ImageFaceDataset", "augment_expressions", "expression_templates", "landmark_loss", "load_image_faces"]
