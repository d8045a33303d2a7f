"""``GradCAMCallback`` for the ``pytorch_lightning`` package.

Import it as ``from cam_callback import GradCAMCallback``.
"""

from __future__ import annotations

from typing import Any

from pytorch_lightning import Callback, LightningModule, Trainer
from pytorch_lightning.loggers import CSVLogger, MLFlowLogger, TensorBoardLogger, WandbLogger
from pytorch_lightning.strategies import DeepSpeedStrategy, FSDPStrategy, ModelParallelStrategy
from typing_extensions import override

from .core import CAMCallbackCore
from .trainer import LightningNamespace

__all__ = ["GradCAMCallback"]


class GradCAMCallback(CAMCallbackCore, Callback):
    """Logs class-activation maps of a fixed validation batch at every selected validation.

    The callback for the ``pytorch_lightning`` package; its arguments and behaviour are those of
    :class:`~cam_callback.callback.core.CAMCallbackCore`.
    """

    namespace = LightningNamespace(
        TensorBoardLogger,
        (FSDPStrategy, DeepSpeedStrategy, ModelParallelStrategy),
        wandb_logger=WandbLogger,
        mlflow_logger=MLFlowLogger,
        csv_logger=CSVLogger,
    )

    @override
    def setup(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        self._setup(trainer, pl_module, stage)

    @override
    def on_train_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._on_train_start(trainer, pl_module)

    @override
    def on_validation_epoch_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._on_validation_epoch_end(trainer, pl_module)

    @override
    def on_train_epoch_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._on_train_epoch_end(trainer, pl_module)

    @override
    def on_fit_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._on_fit_end(trainer, pl_module)

    @override
    def teardown(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        self._teardown(trainer, pl_module, stage)

    @override
    def on_exception(self, trainer: Trainer, pl_module: LightningModule, exception: BaseException) -> None:
        self._on_exception(trainer, pl_module, exception)

    @override
    def state_dict(self) -> dict[str, Any]:
        return self._state()

    @override
    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self._restore(state_dict)
