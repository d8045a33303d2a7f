"""The experiments under ``configs/tasks/`` (one per shipped target object) run through LightningCLI."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any, cast

import pytest
from events import read_events
from pytorch_lightning.loggers import TensorBoardLogger

from cam_callback import GradCAMCallback
from cam_callback.core.tokens import TokenGrid
from cam_callback.demo.cli import main
from cam_callback.targets import DetectionTarget, MultiLabelTarget, RegressionTarget, SegmentationTarget

ROOT = Path(__file__).resolve().parents[2]
TASK_CONFIGS = sorted((ROOT / "configs" / "tasks").glob("*.yaml"))

TINY = [
    "--trainer.max_epochs=1",
    "--trainer.limit_train_batches=1",
    "--trainer.limit_val_batches=1",
    "--trainer.callbacks.init_args.num_samples=2",
    "--data.init_args.num_train=4",
    "--data.init_args.num_val=2",
    "--data.init_args.batch_size=2",
]

EXPECTED = {  # config -> (target class, explained layer, overlay tags' methods)
    "segmentation.yaml": (SegmentationTarget, "model.classifier.cbr", ["gradcam", "layercam"]),
    "detection.yaml": (DetectionTarget, "model.backbone.body.12", ["layercam"]),
    "multilabel.yaml": (MultiLabelTarget, "model.features.7", ["gradcam", "gradcampp"]),
    "regression.yaml": (RegressionTarget, "model.features.7", ["gradcam"]),
}


def test_there_is_one_config_per_shipped_target():
    assert [c.name for c in TASK_CONFIGS] == sorted(EXPECTED)


@pytest.mark.parametrize("config", TASK_CONFIGS, ids=[c.name for c in TASK_CONFIGS])
def test_task_config_trains_and_logs_its_maps(config, tmp_path):
    target_class, layer, methods = EXPECTED[config.name]
    args = ["fit", "--config", str(config), f"--trainer.logger.init_args.save_dir={tmp_path}", *TINY]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        cli = main(args)
    skipped = [str(w.message) for w in caught if "skipped" in str(w.message)]
    assert skipped == []  # no validation's maps were skipped
    callback = next(c for c in cast(Any, cli.trainer).callbacks if isinstance(c, GradCAMCallback))
    assert type(callback.options.target) is target_class
    assert isinstance(cli.trainer.logger, TensorBoardLogger)
    events = read_events(cli.trainer.logger.log_dir)
    # Lightning's own metric of the validation (torchvision's detector gives no loss in eval: its box count)
    val_metric = "val/boxes" if config.name == "detection.yaml" else "val/loss"
    val_steps = [e.step for e in events.Scalars(val_metric)]
    assert val_steps == [cli.trainer.global_step - 1]  # the one validation, after the epoch's last batch
    for method in methods:
        # the maps when training starts, then the one validation at the step of its own val/loss, or, were
        # that step 0 (the step-0 frame's), at the step after
        expected = [0, max(val_steps[0], 1)]
        assert [e.step for e in events.Images(f"cam/{layer}/{method}")] == expected
        # when training starts, then the validation
        assert len(events.Images(f"cam_heatmap/{layer}/{method}")) == 2
    if config.name in ("segmentation.yaml", "regression.yaml", "multilabel.yaml"):  # batches carry masks
        scalars = set(events.Tags()["scalars"])
        assert f"cam_drift/{layer}/{methods[0]}/energy_in_mask" in scalars
        # the step-0 frame's at step 0, then a Lightning metric of the validation, at its step
        energy = events.Scalars(f"cam_drift/{layer}/{methods[0]}/energy_in_mask")
        assert [e.step for e in energy] == [0, *val_steps]


def test_a_reshape_object_is_built_from_the_command_line(tmp_path):
    reshape = (
        '{"class_path": "cam_callback.core.tokens.TokenGrid", '
        '"init_args": {"grid": [4, 4], "prefix_tokens": 5}}'
    )
    args = [
        "--config", str(ROOT / "configs" / "demo.yaml"), f"--trainer.logger.init_args.save_dir={tmp_path}",
        f"--trainer.callbacks.init_args.reshape={reshape}",
    ]
    trainer = cast(Any, main(args, run=False).trainer)
    callback = next(c for c in trainer.callbacks if isinstance(c, GradCAMCallback))
    assert callback.options.engine.reshape_fn == TokenGrid((4, 4), True, 5)


def test_a_target_object_with_arguments_from_the_command_line(tmp_path):
    target = '{"class_path": "cam_callback.targets.DetectionTarget", "init_args": {"class_index": 2}}'
    args = [
        "--config", str(ROOT / "configs" / "tasks" / "detection.yaml"),
        f"--trainer.logger.init_args.save_dir={tmp_path}", f"--trainer.callbacks.init_args.target={target}",
    ]
    trainer = cast(Any, main(args, run=False).trainer)
    callback = next(c for c in trainer.callbacks if isinstance(c, GradCAMCallback))
    target = callback.options.target
    assert isinstance(target, DetectionTarget)
    # the config's own init_args (match: box) are kept, the given one is added
    assert (target.class_index, target.match) == (2, "box")


@pytest.mark.parametrize("name", ["detection.yaml", "multilabel.yaml", "regression.yaml"])
def test_without_a_target_each_task_gets_its_default(name, tmp_path):
    _, layer, methods = EXPECTED[name]
    args = [
        "fit", "--config", str(ROOT / "configs" / "tasks" / name),
        f"--trainer.logger.init_args.save_dir={tmp_path}",
        "--trainer.callbacks.init_args.target=null", "--trainer.callbacks.init_args.strict=true", *TINY,
    ]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        cli = main(args)
    assert [str(w.message) for w in caught if "GradCAMCallback" in str(w.message)] == []
    assert isinstance(cli.trainer.logger, TensorBoardLogger)
    events = read_events(cli.trainer.logger.log_dir)
    assert len(events.Images(f"cam/{layer}/{methods[0]}")) == 2  # when training starts, then the validation


def test_a_detector_that_keeps_no_box_gets_a_warning_not_an_empty_map(tmp_path):
    args = [
        "fit", "--config", str(ROOT / "configs" / "tasks" / "detection.yaml"),
        f"--trainer.logger.init_args.save_dir={tmp_path}",
        "--model.init_args.box_score_thresh=1.0", *TINY,  # scores are below 1: every box is dropped
    ]
    message = r"NoDetectionsError: the detector returned no box .*box_score_thresh"
    with pytest.warns(RuntimeWarning, match=message):
        cli = main(args)
    assert isinstance(cli.trainer.logger, TensorBoardLogger)
    events = read_events(cli.trainer.logger.log_dir)
    assert events.Tags()["images"] == []
