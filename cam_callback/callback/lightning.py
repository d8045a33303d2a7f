"""``GradCAMCallback`` for the unified ``lightning`` package (``lightning.pytorch``).

Use it with ``lightning.pytorch.Trainer`` and its LightningCLI (``cam_callback.lightning.GradCAMCallback``); the
two packages' ``Callback`` classes are different class trees.
"""

from __future__ import annotations

from typing import Any

from lightning.pytorch import Callback, LightningModule, Trainer
from lightning.pytorch.loggers import TensorBoardLogger
from lightning.pytorch.strategies import DeepSpeedStrategy, FSDPStrategy, ModelParallelStrategy
from typing_extensions import override

from .core import CAMCallbackCore
from .trainer import LightningNamespace

__all__ = ["GradCAMCallback"]


class GradCAMCallback(CAMCallbackCore, Callback):
    __doc__ = CAMCallbackCore.__doc__

    namespace = LightningNamespace(TensorBoardLogger, (FSDPStrategy, DeepSpeedStrategy, ModelParallelStrategy))

    @override
    def setup(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        CAMCallbackCore.setup(self, trainer, pl_module, stage)

    @override
    def on_validation_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        CAMCallbackCore.on_validation_end(self, trainer, pl_module)

    @override
    def on_train_epoch_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        CAMCallbackCore.on_train_epoch_end(self, trainer, pl_module)

    @override
    def on_fit_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        CAMCallbackCore.on_fit_end(self, trainer, pl_module)

    @override
    def state_dict(self) -> dict[str, Any]:
        return CAMCallbackCore.state_dict(self)

    @override
    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        CAMCallbackCore.load_state_dict(self, state_dict)
