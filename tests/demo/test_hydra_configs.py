"""The Hydra configs under ``configs/hydra/`` (lightning-hydra-template's layout) build and train."""

from __future__ import annotations

import inspect
import warnings
from pathlib import Path
from typing import Any

import lightning.pytorch as lpt
import pytest
import pytorch_lightning as pl
from events import read_events
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from cam_callback.callback.lightning import GradCAMCallback as UnifiedCallback
from cam_callback.callback.pl import GradCAMCallback as ClassicCallback
from cam_callback.targets import MultiLabelTarget

HYDRA = Path(__file__).resolve().parents[2] / "configs" / "hydra"
CALLBACK_CONFIGS = sorted(p.stem for p in (HYDRA / "callbacks").glob("*.yaml"))
LAYER = "model.features.-1"
SHOWN = "model.features.7"  # the tags name TinyCNN's last layer (8 modules) by its index

TINY = [
    "data.num_train=16", "data.num_val=4", "data.image_size=32", "data.batch_size=8",
    "trainer.max_epochs=1", "trainer.accelerator=cpu", "+trainer.enable_progress_bar=false",
    "+trainer.enable_model_summary=false", "callbacks.gradcam.num_samples=4",
    f"callbacks.gradcam.layer={LAYER}",
]


def _compose(overrides: list[str]) -> DictConfig:
    with initialize_config_dir(config_dir=str(HYDRA), version_base="1.3"):
        return compose("train", overrides=overrides)


def test_the_callback_configs_are_the_expected_ones():
    assert CALLBACK_CONFIGS == ["default", "gradcam", "gradcam_lightning", "gradcam_target"]


def test_gradcam_yaml_lists_every_option_at_its_default():
    written = OmegaConf.to_container(OmegaConf.load(HYDRA / "callbacks" / "gradcam.yaml"))
    assert isinstance(written, dict)
    entry = dict(written["gradcam"])
    assert entry.pop("_target_") == "cam_callback.GradCAMCallback"
    parameters = inspect.signature(ClassicCallback.__init__).parameters
    defaults = {name: p.default for name, p in parameters.items() if name != "self"}
    assert entry == defaults


@pytest.mark.parametrize(
    ("config", "expected"),
    [("default", ClassicCallback), ("gradcam", ClassicCallback), ("gradcam_lightning", UnifiedCallback),
     ("gradcam_target", ClassicCallback)],
)
def test_instantiate_builds_each_callback_config(config, expected):
    built = instantiate(_compose([f"callbacks={config}"]).callbacks)  # as the template: no _convert_
    assert list(built) == ["gradcam"]
    callback = built["gradcam"]
    assert type(callback) is expected
    if config == "gradcam_target":
        assert type(callback.options.target) is MultiLabelTarget and callback.options.target.class_index == 1
        assert callback.options.layers == (LAYER,)
    else:
        assert callback.options.target is None and callback.options.methods == ("gradcam",)


def _fit(cfg: DictConfig) -> tuple[Any, Any]:
    """What lightning-hydra-template's train.py does: instantiate each part, then fit."""
    data = instantiate(cfg.data)
    model = instantiate(cfg.model)
    callbacks = [instantiate(c) for c in cfg.callbacks.values()]
    loggers = [instantiate(c) for c in cfg.logger.values()]
    trainer = instantiate(cfg.trainer, callbacks=callbacks, logger=loggers)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        trainer.fit(model, datamodule=data)
    skipped = [str(w.message) for w in caught if "skipped" in str(w.message)]
    assert skipped == []
    return trainer, callbacks[0]


@pytest.mark.parametrize(
    ("overrides", "trainer_class", "callback_class"),
    [
        ([], pl.Trainer, ClassicCallback),
        (["experiment=lightning"], lpt.Trainer, UnifiedCallback),
        (["callbacks=gradcam_target"], pl.Trainer, ClassicCallback),
    ],
    ids=["pytorch_lightning", "lightning", "target-object"],
)
def test_a_tiny_fit_runs_with_the_hydra_config(tmp_path, overrides, trainer_class, callback_class):
    cfg = _compose([*overrides, *TINY, f"paths.output_dir={tmp_path}"])
    trainer, callback = _fit(cfg)
    assert type(trainer) is trainer_class and type(callback) is callback_class
    assert trainer.current_epoch == 1 and trainer.global_step == 2  # 16 images in batches of 8
    log_dir = trainer.logger.log_dir
    assert Path(log_dir).is_relative_to(tmp_path / "tensorboard")
    tags = read_events(log_dir).Tags()["images"]
    # the step-0 frame and the one validation's, as the overlay and the heatmap grids
    for tag in (f"cam/{SHOWN}/gradcam", f"cam_heatmap/{SHOWN}/gradcam"):
        assert tag in tags
        assert [e.step for e in read_events(log_dir).Images(tag)] == [0, trainer.global_step - 1]
