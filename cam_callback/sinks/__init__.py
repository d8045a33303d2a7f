"""Where images and numbers go: one module per destination, all taking the same records."""

from .base import ImageRecord, Record, ScalarRecord, Sink, publish
from .files import PngSink
from .tensorboard import TensorBoardSink

__all__ = ["ImageRecord", "PngSink", "Record", "ScalarRecord", "Sink", "TensorBoardSink", "publish"]
