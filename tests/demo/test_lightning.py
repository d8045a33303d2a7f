"""The demo's classes in both Lightning namespaces, and the demo config through both command lines."""

from __future__ import annotations

from pathlib import Path
from typing import Any, cast

import lightning.pytorch as lpt
import pytest
import pytorch_lightning as pl
from events import read_events

import cam_callback.demo as classic
import cam_callback.demo.lightning as unified
from cam_callback.callback.lightning import GradCAMCallback as UnifiedCallback
from cam_callback.callback.pl import GradCAMCallback as ClassicCallback
from cam_callback.demo.cli import main as classic_main

ROOT = Path(__file__).resolve().parents[2]
TINY = [
    "--trainer.max_epochs=2", "--trainer.limit_train_batches=3", "--trainer.limit_val_batches=1",
    "--trainer.enable_progress_bar=false", "--trainer.enable_model_summary=false",
    "--trainer.callbacks.init_args.num_samples=4", "--data.init_args.num_train=24",
    "--data.init_args.num_val=8", "--data.init_args.image_size=32", "--data.init_args.batch_size=8",
]
FLAVOURS = {
    "pytorch_lightning": (classic_main, pl, classic, ClassicCallback),
    "lightning": (unified.main, lpt, unified, UnifiedCallback),
}


def test_each_class_has_a_flavour_per_namespace():
    for name in ("ImageClassifier", "ShapesDataModule", "ImageFolderDataModule"):
        mine, theirs = getattr(classic, name), getattr(unified, name)
        base = "LightningModule" if name == "ImageClassifier" else "LightningDataModule"
        assert issubclass(mine, getattr(pl, base)) and not issubclass(mine, getattr(lpt, base))
        assert issubclass(theirs, getattr(lpt, base)) and not issubclass(theirs, getattr(pl, base))


@pytest.mark.parametrize("flavour", FLAVOURS)
def test_the_demo_config_trains_through_each_command_line(tmp_path, flavour):
    main, namespace, demo, callback_class = FLAVOURS[flavour]
    config = str(ROOT / "configs" / "demo.yaml")
    args = ["fit", "--config", config, f"--trainer.logger.init_args.save_dir={tmp_path}"]
    cli = cast(Any, main(args + TINY))  # either flavour's LightningCLI
    assert type(cli.model) is demo.ImageClassifier and type(cli.datamodule) is demo.ShapesDataModule
    assert isinstance(cli.trainer, namespace.Trainer)
    assert isinstance(cli.trainer.logger, namespace.loggers.TensorBoardLogger)
    assert [type(c) for c in cli.trainer.callbacks if isinstance(c, callback_class)] == [callback_class]
    events = read_events(cli.trainer.logger.log_dir)
    steps = [e.step for e in events.Images("cam/model.features.7/gradcam")]
    # the step-0 frame when training starts, then each validation at the step of its own val/acc
    assert steps == [0, *(e.step for e in events.Scalars("val/acc"))] == [0, 2, 5]
    # the captions name the shapes: the data module's classes reached the callback
    assert cli.datamodule.classes == ["circle", "square", "triangle", "cross"]
