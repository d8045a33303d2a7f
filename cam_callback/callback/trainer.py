"""What the callback reads from a Trainer, the hooks it implements, and the classes each namespace brings.

The core is written against :class:`TrainerLike`, the public Trainer API it uses, so it is typed without
importing either Lightning package; each shell (:mod:`~cam_callback.callback.pl`,
:mod:`~cam_callback.callback.lightning`) declares its namespace's classes in a :class:`LightningNamespace`.
:class:`CallbackHooks` declares, once, the Lightning hooks the core overrides, so both shells share one body
per hook with ``@override`` checked against it (and a test checks it against both namespaces' ``Callback``).

One value has no public accessor: the step Lightning logs a validation's metrics at. :func:`logging_step`
is the only read of Lightning's internals in the package, with a public fallback. Nothing here may issue a
collective on rank 0 alone (``trainer.log_dir`` broadcasts, so it is not used).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from types import ModuleType
from typing import Any, Protocol

from torch import nn

__all__ = ["CallbackHooks", "LightningNamespace", "TrainerLike", "logging_step"]


class TrainerLike(Protocol):
    """The public attributes of the Trainer that the callback reads.

    Those of ``pytorch_lightning.Trainer`` and of ``lightning.pytorch.Trainer`` alike.
    """

    @property
    def sanity_checking(self) -> bool:
        """True during the sanity-check validation."""
        ...

    @property
    def current_epoch(self) -> int:
        """The epoch being run, from 0."""
        ...

    @property
    def global_step(self) -> int:
        """Optimizer steps taken so far."""
        ...

    @property
    def loggers(self) -> list[Any]:
        """The run's loggers."""
        ...

    @property
    def is_global_zero(self) -> bool:
        """Whether this process is global rank 0."""
        ...

    @property
    def precision_plugin(self) -> Any:
        """Gives ``convert_input`` and ``forward_context`` for the run's precision."""
        ...

    @property
    def strategy(self) -> Any:
        """The run's strategy (DDP, FSDP, ...)."""
        ...

    @property
    def val_dataloaders(self) -> Any:
        """The validation loaders (one, a list or a dict), or None."""
        ...

    @property
    def train_dataloader(self) -> Any:
        """The training loader, or None."""
        ...

    @property
    def enable_validation(self) -> bool:
        """Whether the fit runs validation at all."""
        ...

    @property
    def default_root_dir(self) -> str:
        """The run's root folder."""
        ...

    # Also read, with getattr as the Trainer sets them only in __init__ or a fit: ``fast_dev_run``,
    # ``datamodule``.


def logging_step(trainer: TrainerLike, source: str = "val") -> int:
    """The step Lightning's loggers get for the metrics of the validation (or training epoch) now ending.

    Lightning logs them at the fit loop's count of optimizer-stepping batches
    (``trainer.fit_loop.epoch_loop._batches_that_stepped``, which its own ``LearningRateMonitor`` reads too;
    there is no public accessor). It trails ``trainer.global_step`` by one during an end-of-batch
    validation; at a training epoch's end Lightning logs one step earlier (the counter has already moved
    on). A Trainer without that counter (another version, or a stand-in) gets ``trainer.global_step``.

    Args:
        trainer: the running Trainer.
        source: ``"val"`` (a validation) or ``"train"`` (the end of a training epoch without one).
    """
    epoch_loop = getattr(getattr(trainer, "fit_loop", None), "epoch_loop", None)
    counted = getattr(epoch_loop, "_batches_that_stepped", None)
    if not isinstance(counted, int) or isinstance(counted, bool):
        return int(trainer.global_step)
    return max(0, counted - 1) if source == "train" else counted


class CallbackHooks:
    """The Lightning ``Callback`` hooks the core implements, with their signatures (no-ops here).

    The core overrides each with ``@override``; a shell puts the core before its namespace's ``Callback``,
    so these bodies are never reached there. ``tests/callback/test_trainer.py`` checks that every hook named
    here exists with the same parameters on both namespaces' ``Callback``.
    """

    def setup(self, trainer: TrainerLike, pl_module: nn.Module, stage: str) -> None:
        """Called when fit, validate, test or predict begins."""

    def on_train_start(self, trainer: TrainerLike, pl_module: nn.Module) -> None:
        """Called when training begins, before the first training step."""

    def on_validation_epoch_end(self, trainer: TrainerLike, pl_module: nn.Module) -> None:
        """Called when a validation ends."""

    def on_validation_batch_start(
        self, trainer: TrainerLike, pl_module: nn.Module, batch: Any, batch_idx: int, dataloader_idx: int = 0
    ) -> None:
        """Called before each validation batch goes through the model."""

    def on_train_batch_start(
        self, trainer: TrainerLike, pl_module: nn.Module, batch: Any, batch_idx: int
    ) -> None:
        """Called before each training batch goes through the model."""

    def on_train_epoch_end(self, trainer: TrainerLike, pl_module: nn.Module) -> None:
        """Called when a training epoch ends."""

    def on_fit_end(self, trainer: TrainerLike, pl_module: nn.Module) -> None:
        """Called when fit ends."""

    def teardown(self, trainer: TrainerLike, pl_module: nn.Module, stage: str) -> None:
        """Called when fit, validate, test or predict ends."""

    def on_exception(self, trainer: TrainerLike, pl_module: nn.Module, exception: BaseException) -> None:
        """Called when the run raises or is interrupted."""

    def state_dict(self) -> dict[str, Any]:
        """The state to save in a checkpoint."""
        return {}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Restore what :meth:`state_dict` returned."""


@dataclass(frozen=True)
class LightningNamespace:
    """The classes of one Lightning namespace that the callback treats specially.

    Attributes:
        tensorboard_logger: its ``TensorBoardLogger`` (subclasses count too, as for every logger here).
        sharded_strategies: strategies whose every forward gathers parameters, so every rank must run the
            same CAM forward (FSDP, DeepSpeed, model parallel).
        wandb_logger: its ``WandbLogger``.
        mlflow_logger: its ``MLFlowLogger``.
        csv_logger: its ``CSVLogger``.
        info: its rank-zero information line (``rank_zero_info``), which Lightning prints beside its own;
            None: the ``cam_callback`` logger of :mod:`logging`.
    """

    tensorboard_logger: type[Any]
    sharded_strategies: tuple[type[Any], ...]
    wandb_logger: type[Any] | None = None
    mlflow_logger: type[Any] | None = None
    csv_logger: type[Any] | None = None
    info: Callable[[str], None] | None = None

    @classmethod
    def of(
        cls, loggers: ModuleType, strategies: ModuleType, info: Callable[[str], None] | None = None
    ) -> LightningNamespace:
        """The classes of a namespace, from its ``loggers`` and ``strategies`` modules (both alike)."""
        sharded = (strategies.FSDPStrategy, strategies.DeepSpeedStrategy, strategies.ModelParallelStrategy)
        return cls(
            loggers.TensorBoardLogger, sharded, wandb_logger=loggers.WandbLogger,
            mlflow_logger=loggers.MLFlowLogger, csv_logger=loggers.CSVLogger, info=info,
        )
