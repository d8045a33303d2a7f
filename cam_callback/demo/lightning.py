"""The demo's classes for the unified ``lightning`` package (``lightning.pytorch``), and its command line.

The same code as :mod:`cam_callback.demo` (the mixins in :mod:`.classifier` and :mod:`.datamodules`) on
``lightning.pytorch``'s base classes, so a ``lightning.pytorch.Trainer`` and its LightningCLI take them:
``python -m cam_callback.lightning fit --config configs/demo.yaml``.
"""

from __future__ import annotations

import lightning.pytorch as lpt
from lightning.pytorch.cli import ArgsType, LightningCLI

from ..callback.lightning import GradCAMCallback
from .classifier import ImageClassifierCore
from .cli import run_cli
from .datamodules import ImageFolderDataModuleCore, ShapesDataModuleCore

__all__ = ["GradCAMCallback", "ImageClassifier", "ImageFolderDataModule", "ShapesDataModule", "main"]


class ImageClassifier(ImageClassifierCore, lpt.LightningModule):  # type: ignore[misc]
    """The classifier for ``lightning.pytorch``; see :class:`~.classifier.ImageClassifierCore`."""


class ShapesDataModule(ShapesDataModuleCore, lpt.LightningDataModule):  # type: ignore[misc]
    """The shapes for ``lightning.pytorch``; see :class:`~.datamodules.ShapesDataModuleCore`."""


class ImageFolderDataModule(ImageFolderDataModuleCore, lpt.LightningDataModule):  # type: ignore[misc]
    """A folder of images for ``lightning.pytorch``; see :class:`~.datamodules.ImageFolderDataModuleCore`."""


def main(args: ArgsType = None, *, run: bool = True) -> LightningCLI:
    """Run the command line of the unified package (``fit``, ``validate``, ...) over the same configs."""
    cli: LightningCLI = run_cli(
        LightningCLI, lpt.LightningModule, lpt.LightningDataModule, args, run, "cam_callback.lightning"
    )
    return cli

