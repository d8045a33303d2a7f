"""Every shipped config, at tiny settings: real maps at its last validation, and no warning of its own."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any, cast

import cv2
import numpy as np
import pytest
from events import read_events

from cam_callback import GradCAMCallback
from cam_callback.demo.cli import main

ROOT = Path(__file__).resolve().parents[2]
CONFIGS = sorted([*(ROOT / "configs").glob("*.yaml"), *(ROOT / "configs" / "tasks").glob("*.yaml")])

TINY = ["--trainer.max_epochs=2", "--trainer.limit_val_batches=1", "--trainer.enable_progress_bar=false"]
SHAPES = [
    "--trainer.limit_train_batches=2", "--trainer.callbacks.init_args.num_samples=4",
    "--data.init_args.num_train=16", "--data.init_args.num_val=8", "--data.init_args.batch_size=8",
]
SMALL_IMAGES = ["--data.init_args.image_size=32"]  # the classifiers' and multilabel's own sizes are larger
TINY_BY_CONFIG = {
    # 2 of their 63 batches an epoch: log them (the configs' 10 suits 63)
    "demo.yaml": [*SHAPES, *SMALL_IMAGES, "--trainer.log_every_n_steps=1"],
    "shortcut.yaml": [*SHAPES, *SMALL_IMAGES, "--trainer.log_every_n_steps=1"],
    "imagefolder.yaml": [  # 12 images, 2 held back: the 10 others are one training batch an epoch
        "--data.init_args.image_size=32", "--data.init_args.num_workers=0", "--model.init_args.num_classes=2",
        "--data.init_args.augment=false", "--trainer.callbacks.init_args.num_samples=2",
    ],
    "detection.yaml": SHAPES,
    "multilabel.yaml": SHAPES,
    "regression.yaml": SHAPES,
    "segmentation.yaml": SHAPES,
}

# Configs whose target and layer give every sample a map even barely trained. A classifier's Grad-CAM can be
# blank for a sample whose evidence at the layer is all negative (the final ReLU), most often early on.
EVERY_SAMPLE = ("detection.yaml", "segmentation.yaml", "regression.yaml")

# Third-party notices a test run sees whatever the config says: none of them is the config's or ours.
FOREIGN = (
    "was deprecated in v4.",  # jsonargparse's deprecations inside LightningCLI
    "JSONARGPARSE_DEPRECATION_WARNINGS",  # and its note on them
    "isinstance(treespec, LeafSpec)",  # Lightning's use of a deprecated torch API
    "LightningCLI's args parameter",  # the test passes args while pytest's own sys.argv is set
)


def _foreign(message: str) -> bool:
    return any(notice in message for notice in FOREIGN)


def _image_folder(root: Path) -> Path:
    """Two classes of six 32x32 images: a bright square on the left or on the right."""
    generator = np.random.default_rng(0)
    for label, column in (("left", slice(2, 14)), ("right", slice(18, 30))):
        (root / label).mkdir(parents=True)
        for i in range(6):
            image = generator.integers(0, 60, (32, 32, 3), dtype=np.uint8)
            image[10:22, column] = 230
            cv2.imwrite(str(root / label / f"{i}.png"), image)
    return root


def test_every_shipped_config_is_tested():
    assert sorted(c.name for c in CONFIGS) == sorted(TINY_BY_CONFIG)


@pytest.mark.parametrize("config", CONFIGS, ids=[c.name for c in CONFIGS])
def test_a_shipped_config_shows_real_maps_at_its_last_validation_and_warns_of_nothing(config, tmp_path):
    args = ["fit", "--config", str(config), f"--trainer.logger.init_args.save_dir={tmp_path}", *TINY]
    args += TINY_BY_CONFIG[config.name]
    if config.name == "imagefolder.yaml":
        args.append(f"--data.init_args.train_dir={_image_folder(tmp_path / 'images')}")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        cli = main(args)
    own = [f"{w.category.__name__}: {w.message}" for w in caught if not _foreign(str(w.message))]
    assert own == []
    callback = next(c for c in cast(Any, cli.trainer).callbacks if isinstance(c, GradCAMCallback))
    frames = callback.history.frames()
    assert frames
    for key, stack in frames.items():
        peaks = stack[-1].flatten(1).amax(dim=1)  # each sample's peak in the last validation's maps
        assert float(peaks.max()) > 0, f"{key}: the last validation's maps are all zero"
        if config.name in EVERY_SAMPLE:
            assert bool((peaks > 0).all()), f"{key}: blank maps at the last validation ({peaks.tolist()})"
        # the step-0 frame and each validation at steps of their own, the last validation's the latest
        steps = callback.history.steps(*key)
        assert steps[0] == 0 and steps == sorted(set(steps)) and len(steps) == 3


def test_one_training_batch_an_epoch_gives_every_frame_a_step_of_its_own(tmp_path):
    """12 images, one batch an epoch: Lightning logs epoch 0's validation at step 0, the step-0 frame's."""
    folder = _image_folder(tmp_path / "images")
    args = [
        "fit", "--config", str(ROOT / "configs" / "imagefolder.yaml"),
        f"--trainer.logger.init_args.save_dir={tmp_path}", f"--data.init_args.train_dir={folder}",
        *TINY, *TINY_BY_CONFIG["imagefolder.yaml"],
    ]
    cli = main(args)
    log_dir = cast(Any, cli.trainer).logger.log_dir
    events = read_events(log_dir)
    val_steps = [e.step for e in events.Scalars("val/loss")]
    assert val_steps == [0, 1]  # one optimizer step an epoch, each validation logged one below global_step
    for tag in ("cam/model.layer4/gradcam", "cam/model.layer4/gradcampp"):
        # the step-0 frame at 0; epoch 0's validation would fall on it, so it and the next go one later
        assert [e.step for e in events.Images(tag)] == [0, 1, 2]
