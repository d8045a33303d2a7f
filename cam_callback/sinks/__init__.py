"""Where images go: one module per destination, all taking the same image records.

The numbers go to the loggers through Lightning; :class:`ScalarsCsv` keeps them for a run without a logger.
"""

from .atomic import WriteFailure
from .base import ImageRecord, Sink, publish
from .events import ChartGroup
from .files import PngSink, ScalarsCsv
from .mlflow import MlflowSink
from .tensorboard import TensorBoardSink
from .wandb import WandbSink
from .writer import BackgroundWriter, Job

__all__ = [
    "BackgroundWriter",
    "ChartGroup",
    "ImageRecord",
    "Job",
    "MlflowSink",
    "PngSink",
    "ScalarsCsv",
    "Sink",
    "TensorBoardSink",
    "WandbSink",
    "WriteFailure",
    "publish",
]
