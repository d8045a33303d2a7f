"""The callback in both Lightning namespaces: ``pytorch_lightning`` and the unified ``lightning.pytorch``."""

from __future__ import annotations

from typing import Any

import lightning.pytorch as lpt
import pytest
import pytorch_lightning as pl
from events import read_events
from lightning.pytorch.cli import LightningCLI as UnifiedCLI
from lit_models import loaders, make_module_class
from pytorch_lightning.cli import LightningCLI as ClassicCLI

import cam_callback
import cam_callback.callback.pl
import cam_callback.lightning

FLAVOURS = {
    "pytorch_lightning": (
        pl, cam_callback.callback.pl.GradCAMCallback, ClassicCLI, "cam_callback.GradCAMCallback"
    ),
    "lightning": (
        lpt, cam_callback.lightning.GradCAMCallback, UnifiedCLI, "cam_callback.lightning.GradCAMCallback"
    ),
}


def test_top_level_name_is_the_pytorch_lightning_flavour():
    assert cam_callback.GradCAMCallback is cam_callback.callback.pl.GradCAMCallback
    assert issubclass(cam_callback.callback.pl.GradCAMCallback, pl.Callback)
    assert issubclass(cam_callback.lightning.GradCAMCallback, lpt.Callback)
    assert not issubclass(cam_callback.lightning.GradCAMCallback, pl.Callback)


@pytest.mark.parametrize("flavour", FLAVOURS)
def test_fit_logs_maps(tmp_path, flavour):
    namespace, callback_class, _, _ = FLAVOURS[flavour]
    callback = callback_class(layer="features.3", num_samples=2)
    trainer = namespace.Trainer(
        max_epochs=1,
        callbacks=[callback],
        logger=namespace.loggers.TensorBoardLogger(str(tmp_path), name="run"),
        enable_progress_bar=False,
        enable_model_summary=False,
        enable_checkpointing=False,
    )
    trainer.fit(make_module_class(namespace)(), *loaders())
    events = read_events(trainer.logger.log_dir)
    # training starts, then epoch 1's validation at the step of val_loss
    assert [e.step for e in events.Images("cam/features.3/gradcam")] == [0, 5]


@pytest.mark.parametrize("flavour", FLAVOURS)
def test_lightning_cli_builds_the_callback_from_yaml(tmp_path, flavour):
    namespace, callback_class, cli_class, class_path = FLAVOURS[flavour]
    config = tmp_path / "config.yaml"
    config.write_text(
        "trainer:\n"
        "  max_epochs: 1\n"
        "  callbacks:\n"
        f"    - class_path: {class_path}\n"
        "      init_args:\n"
        "        layer: [features.3, features.0]\n"
        "        method: [gradcam, layercam]\n"
        "        num_samples: 5\n"
        "        colormap: turbo\n"
        "        mean: [0.5, 0.5, 0.5]\n"
        "        std: [0.25, 0.25, 0.25]\n"
    )
    cli: Any = cli_class(  # two CLI classes with no common base; Trainer.callbacks is set at run time
        make_module_class(namespace),
        run=False,
        args=["--config", str(config), "--trainer.callbacks.init_args.alpha=0.3"],
        save_config_callback=None,
    )
    found = [c for c in cli.trainer.callbacks if isinstance(c, callback_class)]
    assert len(found) == 1
    callback = found[0]
    options = callback.options
    assert callback.layers == ["features.3", "features.0"] and options.layers == ("features.3", "features.0")
    assert options.methods == ("gradcam", "layercam")
    assert (options.num_samples, options.display.colormap, options.display.alpha) == (5, "turbo", 0.3)
    assert options.display.std == (0.25, 0.25, 0.25)
