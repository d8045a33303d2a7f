"""The demo: an image classifier, the synthetic shapes and image-folder data modules, and the command line."""

from .classifier import ImageClassifier, TinyCNN, build_model, model_names
from .datamodules import IMAGENET_MEAN, IMAGENET_STD, ImageFolderDataModule, ShapesDataModule
from .shapes import SHAPE_NAMES, ShapesDataset

__all__ = [
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "SHAPE_NAMES",
    "ImageClassifier",
    "ImageFolderDataModule",
    "ShapesDataModule",
    "ShapesDataset",
    "TinyCNN",
    "build_model",
    "model_names",
]
