"""What the callback reads from a Trainer: the logging step (its one internal read, and a fallback), hooks."""

from __future__ import annotations

import csv
import inspect
import types
from pathlib import Path
from typing import Any, cast

import lightning.pytorch as lpt
import pytest
import pytorch_lightning as pl

from cam_callback.callback.trainer import CallbackHooks, LightningNamespace, TrainerLike, logging_step

HOOKS = [name for name, value in vars(CallbackHooks).items() if inspect.isfunction(value)]


def _trainer(**attributes: Any) -> TrainerLike:
    return cast(TrainerLike, types.SimpleNamespace(**attributes))


def test_the_step_is_lightnings_count_of_stepping_batches():
    counted = types.SimpleNamespace(epoch_loop=types.SimpleNamespace(_batches_that_stepped=12))
    trainer = _trainer(global_step=13, fit_loop=counted)
    assert logging_step(trainer) == 12  # an end-of-batch validation: one below global_step
    assert logging_step(trainer, "train") == 11  # a training epoch's end: the counter already moved on


def test_without_that_counter_the_step_falls_back_to_global_step():
    assert logging_step(_trainer(global_step=7)) == 7
    assert logging_step(_trainer(global_step=7, fit_loop=types.SimpleNamespace())) == 7
    odd = types.SimpleNamespace(epoch_loop=types.SimpleNamespace(_batches_that_stepped="12"))
    assert logging_step(_trainer(global_step=7, fit_loop=odd)) == 7
    assert logging_step(_trainer(global_step=0), "train") == 0


def test_on_a_real_trainer_the_step_is_the_one_lightning_logs_validation_metrics_at(tmp_path):
    from lit_models import loaders, make_module_class

    steps: list[tuple[int, int]] = []

    class Probe(pl.Callback):
        def on_validation_epoch_end(self, trainer, pl_module):
            if not trainer.sanity_checking:
                steps.append((logging_step(trainer), trainer.global_step))

    logger = pl.loggers.CSVLogger(str(tmp_path), name="run")
    trainer = pl.Trainer(
        max_epochs=2, callbacks=[Probe()], logger=logger, enable_progress_bar=False,
        enable_model_summary=False, enable_checkpointing=False, log_every_n_steps=1,
    )
    trainer.fit(make_module_class(pl)(), *loaders())
    with open(Path(logger.log_dir) / "metrics.csv", newline="") as handle:
        logged = [int(row["step"]) for row in csv.DictReader(handle) if row.get("val_loss")]
    # 6 training batches per epoch; each validation runs at the end of the epoch's last batch, whose
    # optimizer step is counted in global_step but not yet in Lightning's logging counter.
    assert steps == [(5, 6), (11, 12)]
    assert [step for step, _ in steps] == logged


@pytest.mark.parametrize("namespace", [pl, lpt], ids=["pytorch_lightning", "lightning"])
@pytest.mark.parametrize("hook", HOOKS)
def test_every_hook_the_core_overrides_is_a_callback_hook_of_both_namespaces(namespace, hook):
    theirs = getattr(namespace.Callback, hook, None)
    assert callable(theirs), f"{namespace.__name__}.Callback has no {hook}"
    ours = inspect.signature(getattr(CallbackHooks, hook))
    assert list(inspect.signature(theirs).parameters) == list(ours.parameters)


@pytest.mark.parametrize("namespace", [pl, lpt], ids=["pytorch_lightning", "lightning"])
def test_a_namespace_is_read_from_its_loggers_and_strategies(namespace):
    found = LightningNamespace.of(namespace.loggers, namespace.strategies)
    assert found.tensorboard_logger is namespace.loggers.TensorBoardLogger
    assert found.wandb_logger is namespace.loggers.WandbLogger
    assert found.mlflow_logger is namespace.loggers.MLFlowLogger
    assert found.csv_logger is namespace.loggers.CSVLogger
    assert namespace.strategies.FSDPStrategy in found.sharded_strategies
    assert namespace.strategies.DeepSpeedStrategy in found.sharded_strategies
    assert namespace.strategies.DDPStrategy not in found.sharded_strategies
