"""Data for demos, tests and real runs: synthetic shapes with object masks, and image folders."""

from .modules import IMAGENET_MEAN, IMAGENET_STD, ImageFolderDataModule, ShapesDataModule
from .shapes import SHAPE_NAMES, ShapesDataset

__all__ = [
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "SHAPE_NAMES",
    "ImageFolderDataModule",
    "ShapesDataModule",
    "ShapesDataset",
]
