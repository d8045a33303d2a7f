"""What the callback reads from a Trainer, and the classes each Lightning namespace brings.

The core is written against :class:`TrainerLike`, the public Trainer API it uses, so it is typed without
importing either Lightning package; each shell (:mod:`~cam_callback.callback.pl`,
:mod:`~cam_callback.callback.lightning`) declares its namespace's classes in a :class:`LightningNamespace`.
Nothing may issue a collective on rank 0 alone (``trainer.log_dir`` broadcasts, so it is not used).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

__all__ = ["LightningNamespace", "TrainerLike"]


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

    # Also read, with getattr as the Trainer sets it only in __init__: ``fast_dev_run``.


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
    """

    tensorboard_logger: type[Any]
    sharded_strategies: tuple[type[Any], ...]
    wandb_logger: type[Any] | None = None
    mlflow_logger: type[Any] | None = None
    csv_logger: type[Any] | None = None
