"""The callback's numbers as Lightning metrics of the validation they belong to.

Numbers logged with ``LightningModule.log`` from ``on_validation_epoch_end`` (a hook where Lightning
allows callbacks to log at epoch level) join that validation's own metrics: ``trainer.callback_metrics``
(what ``EarlyStopping`` and ``ModelCheckpoint`` monitor), ``trainer.logged_metrics`` and every logger,
at the step of ``val_loss``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from .trainer import TrainerLike

__all__ = ["log_numbers", "log_to_loggers"]


def log_numbers(trainer: TrainerLike, pl_module: Any, numbers: Mapping[str, float]) -> None:
    """Log rank 0's ``numbers`` as epoch-level Lightning metrics on every rank, so every rank monitors them.

    Call it on every rank (it broadcasts from rank 0: a collective). Each rank then logs the same values
    with ``sync_dist=True, reduce_fx="max"``: equal values reduce to themselves exactly, and Lightning's
    advice to sync epoch-level metrics under DDP is met. One batch of one, so the value is kept as is.

    Args:
        trainer: the running Trainer.
        pl_module: the LightningModule (its ``log`` records the metrics).
        numbers: metric name to value, as computed on rank 0 (other ranks' are ignored).
    """
    shared = trainer.strategy.broadcast(dict(numbers), src=0)
    for name, value in shared.items():
        pl_module.log(
            name, float(value), on_step=False, on_epoch=True, prog_bar=False, batch_size=1,
            sync_dist=True, reduce_fx="max",
        )


def log_to_loggers(trainer: TrainerLike, numbers: Mapping[str, float], step: int) -> None:
    """Give rank 0's ``numbers`` of a frame made outside a validation straight to every logger, at ``step``.

    The frame made when training starts belongs to no validation, so Lightning has no metrics to join them
    to; each logger's ``log_metrics`` takes them as it takes Lightning's (and a run without a logger keeps
    them in its CSV file). Call it on global rank 0 only.
    """
    if numbers:
        for logger in trainer.loggers:
            logger.log_metrics(dict(numbers), step)
