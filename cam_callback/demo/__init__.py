"""The demo: an image classifier, the synthetic shapes (also recast for other tasks), and the command line."""

from .classifier import ImageClassifier, TinyCNN, build_model, model_names
from .datamodules import IMAGENET_MEAN, IMAGENET_STD, ImageFolderDataModule, ShapesDataModule
from .shapes import SHAPE_NAMES, ShapesDataset
from .task_data import ShapesTaskDataModule, ShapesTaskDataset, detection_collate
from .task_models import ShapesDetector, ShapesMultiLabel, ShapesRegressor, ShapesSegmenter

__all__ = [
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "SHAPE_NAMES",
    "ImageClassifier",
    "ImageFolderDataModule",
    "ShapesDataModule",
    "ShapesDataset",
    "ShapesDetector",
    "ShapesMultiLabel",
    "ShapesRegressor",
    "ShapesSegmenter",
    "ShapesTaskDataModule",
    "ShapesTaskDataset",
    "TinyCNN",
    "build_model",
    "detection_collate",
    "model_names",
]
