"""Where images and numbers go: one module per destination, all taking the same records."""

from .base import ImageRecord, Record, ScalarRecord, Sink, publish
from .files import PngSink
from .tensorboard import TensorBoardSink
from .writer import BackgroundWriter

__all__ = [
    "BackgroundWriter", "ImageRecord", "PngSink", "Record", "ScalarRecord", "Sink", "TensorBoardSink",
    "publish",
]
