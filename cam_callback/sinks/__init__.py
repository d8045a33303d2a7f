"""Where images and numbers go: one module per destination, all taking the same records."""

from .base import ImageRecord, Record, ScalarRecord, Sink, publish
from .files import PngSink
from .mlflow import MlflowSink
from .tensorboard import TensorBoardSink
from .wandb import WandbSink
from .writer import BackgroundWriter

__all__ = [
    "BackgroundWriter",
    "ImageRecord",
    "MlflowSink",
    "PngSink",
    "Record",
    "ScalarRecord",
    "Sink",
    "TensorBoardSink",
    "WandbSink",
    "publish",
]
