"""The YAML experiments under ``configs/`` run through ``python -m cam_callback`` (LightningCLI)."""

from __future__ import annotations

import inspect
import os
import subprocess
import sys
import warnings
from pathlib import Path
from typing import Any, cast

import cv2
import pytest
import torch
from events import read_events
from lightning_fabric.utilities.data import AttributeDict
from pytorch_lightning.loggers import TensorBoardLogger

from cam_callback import AttentionWarning, GradCAMCallback
from cam_callback.core.options import CAMOptions
from cam_callback.demo import ImageFolderDataModule, ShapesDataModule, ShapesDataset
from cam_callback.demo.classifier import ImageClassifier
from cam_callback.demo.cli import main
from cam_callback.targets import FinerTarget

ROOT = Path(__file__).resolve().parents[2]
CONFIGS = sorted((ROOT / "configs").glob("*.yaml"))

# Small enough for a test: 2 epochs of 3 batches of 8 images of 32x32, one validation batch.
TINY = [
    "--trainer.max_epochs=2",
    "--trainer.limit_train_batches=3",
    "--trainer.limit_val_batches=1",
    "--trainer.enable_progress_bar=false",
    "--trainer.enable_model_summary=false",
    "--trainer.callbacks.init_args.num_samples=4",
]
TINY_SHAPES = [
    "--data.init_args.num_train=24",
    "--data.init_args.num_val=8",
    "--data.init_args.image_size=32",
    "--data.init_args.batch_size=8",
]




def _image_folder(root: Path, classes: int = 2, per_class: int = 5) -> Path:
    """Write a few shape images as PNG files, one folder per class."""
    dataset = ShapesDataset(classes * per_class * 4, image_size=48, num_classes=classes, seed=3)
    counts = [0] * classes
    for index in range(len(dataset)):
        sample = dataset[index]
        label = int(sample["label"])
        if counts[label] == per_class:
            continue
        counts[label] += 1
        rgb = sample["image"] * torch.tensor(ShapesDataset.STD)[:, None, None]
        rgb = rgb + torch.tensor(ShapesDataset.MEAN)[:, None, None]
        pixels = (rgb.clamp(0, 1) * 255).round().byte().permute(1, 2, 0).numpy()[:, :, ::-1]
        folder = root / f"class_{label}"
        folder.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(folder / f"{counts[label]}.png"), pixels)
    assert counts == [per_class] * classes
    return root


@pytest.mark.parametrize("config", CONFIGS, ids=[c.name for c in CONFIGS])
def test_every_config_parses_and_builds_its_parts(config, tmp_path):
    args = ["--config", str(config), f"--trainer.logger.init_args.save_dir={tmp_path}"]
    if config.name == "imagefolder.yaml":
        args.append(f"--data.init_args.train_dir={_image_folder(tmp_path / 'images')}")
    cli = main(args, run=False)
    assert isinstance(cli.model, ImageClassifier)
    callbacks = [c for c in cast(Any, cli.trainer).callbacks if isinstance(c, GradCAMCallback)]
    assert len(callbacks) == 1
    options = callbacks[0].options
    assert options.methods == ("gradcam", "gradcam++")
    if config.name == "imagefolder.yaml":
        assert isinstance(cli.datamodule, ImageFolderDataModule)
        # display undoes the data's own normalisation
        assert options.display.mean == tuple(cli.datamodule.mean)
    else:
        assert isinstance(cli.datamodule, ShapesDataModule)
        assert cast(AttributeDict, cli.datamodule.hparams).shortcut == (config.name == "shortcut.yaml")
        assert options.display.mean == tuple(cli.datamodule.mean)
        assert options.display.std == tuple(cli.datamodule.std)
        assert cast(AttributeDict, cli.model.hparams).arch == "tinycnn"


def test_the_newer_methods_and_finer_target_from_yaml(tmp_path):
    # The demo's config with its callback's `method` and `target` lines replaced.
    text = (ROOT / "configs" / "demo.yaml").read_text()
    methods = "        method: [GradCAMElementWise, KPCA_CAM, shapleycam, finercam, fullgrad]\n"
    target = (
        "        target:\n          class_path: cam_callback.targets.FinerTarget\n"
        "          init_args: {ranks: [1, 2]}\n"
    )
    replace = {"method:": methods, "target:": target}
    lines = [replace.get(line.split()[0] if line.strip() else "", line) for line in text.splitlines(True)]
    assert lines.count(methods) == lines.count(target) == 1
    path = tmp_path / "newer.yaml"
    path.write_text("".join(lines))
    cli = main(["--config", str(path), f"--trainer.logger.init_args.save_dir={tmp_path}"], run=False)
    callback = next(c for c in cast(Any, cli.trainer).callbacks if isinstance(c, GradCAMCallback))
    names = ("gradcam-elementwise", "kpcacam", "shapleycam", "finercam", "fullgrad")
    assert callback.options.methods == names
    assert isinstance(callback.options.target, FinerTarget)
    assert (callback.options.target.ranks, callback.options.target.alpha) == ((1, 2), 1.0)


def test_every_callback_option_can_be_set_from_the_command_line(tmp_path):
    overrides = {
        "layer": "[model.features.4]",
        "method": "[layercam,eigencam]",
        "num_samples": "3",
        "measure_samples": "all",
        "target": "predicted",
        "every_n_epochs": "2",
        "alpha": "0.25",
        "colormap": "turbo",
        "input_key": "image",
        "label_key": "label",
        "mask_key": "mask",
        "mean": "[0.4,0.4,0.4]",
        "std": "[0.2,0.2,0.2]",
        "log_heatmaps": "false",
        "image_format": "png",
        "history_size": "16",
        "tag_prefix": "attention",
        "strict": "true",
        "reshape": "tokens",
        "eigen_smooth": "true",
        "aug_smooth": "true",
        "aug_scales": "[1.0,0.8]",
        "chunk_size": "8",
        "class_names": "[a,b,c,d]",
        "min_display_size": "96",
        "alarm": "false",
        "train_samples": "5",
        "faithfulness": "[deletion,average_drop]",
    }
    parameters = set(inspect.signature(GradCAMCallback.__init__).parameters) - {"self"}
    assert parameters == set(overrides), "every option must be covered here"
    args = [
        "--config", str(ROOT / "configs" / "demo.yaml"), f"--trainer.logger.init_args.save_dir={tmp_path}"
    ]
    args += [f"--trainer.callbacks.init_args.{name}={value}" for name, value in overrides.items()]
    callback = next(
        c for c in cast(Any, main(args, run=False).trainer).callbacks if isinstance(c, GradCAMCallback)
    )
    options = callback.options
    assert callback.layers == ["model.features.4"] and options.layers == ("model.features.4",)
    assert options.methods == ("layercam", "eigencam")
    assert (options.num_samples, options.target, options.every_n_epochs) == (3, "predicted", 2)
    assert options.measure_samples == "all"
    display = options.display
    assert (display.alpha, display.colormap, options.keys) == (0.25, "turbo", ("image", "label", "mask"))
    assert (display.mean, display.std) == ((0.4,) * 3, (0.2,) * 3)
    assert (display.log_heatmaps, callback.history.max_side, options.tag_prefix) == (False, 16, "attention")
    assert (options.history_size, display.tag_prefix) == (16, "attention")
    assert (options.strict, display.image_format) == (True, "png")
    assert options.engine == CAMOptions(
        reshape="tokens", eigen_smooth=True, aug_smooth=True, aug_scales=(1.0, 0.8), chunk_size=8
    )
    assert options.class_names == ("a", "b", "c", "d")
    assert display.min_tile == 96
    assert (options.alarm, options.train_samples) == (False, 5)
    assert options.faithfulness == ("deletion", "average_drop")


def test_demo_config_trains_and_logs_overlays_and_drift(tmp_path):
    args = [
        "fit", "--config", str(ROOT / "configs" / "demo.yaml"),
        f"--trainer.logger.init_args.save_dir={tmp_path}",
    ]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        cli = main(args + TINY + TINY_SHAPES)
    # The demo is a healthy run: the attention alarm stays silent.
    assert [str(w.message) for w in caught if issubclass(w.category, AttentionWarning)] == []
    assert isinstance(cli.trainer.logger, TensorBoardLogger)
    log_dir = cli.trainer.logger.log_dir
    events = read_events(log_dir)
    images, scalars = set(events.Tags()["images"]), set(events.Tags()["scalars"])
    for layer in ("model.features.7", "model.features.5"):  # features.-1 is logged under its resolved name
        for method in ("gradcam", "gradcampp"):  # gradcam++ is named gradcampp in tags and metric names
            # when training starts, then at the step of the validation's own metrics (3 batches an epoch,
            # logged one step before)
            val_steps = [e.step for e in events.Scalars("val/acc")]
            assert val_steps == [2, 5]
            assert [e.step for e in events.Images(f"cam/{layer}/{method}")] == [0, *val_steps]
            assert f"cam_heatmap/{layer}/{method}" in images
            assert len(events.Images(f"cam_summary/{layer}/{method}")) == 1
            for name in ("energy_in_mask", "pointing_game"):  # the shapes data carries object masks
                drift = events.Scalars(f"cam_drift/{layer}/{method}/{name}")
                # the step-0 frame's at step 0, then Lightning metrics of each validation, at its own step
                assert [e.step for e in drift] == [0, *val_steps]
                assert all(0.0 <= e.value <= 1.0 for e in drift)
            assert f"cam_drift/{layer}/{method}/change_prev" in scalars
            assert os.path.exists(os.path.join(log_dir, f"cam_summary_{layer}_{method}.png"))
    assert "val/acc" in scalars


def test_shortcut_config_runs_with_the_marker_in_training_images_only(tmp_path):
    args = [
        "fit", "--config", str(ROOT / "configs" / "shortcut.yaml"),
        f"--trainer.logger.init_args.save_dir={tmp_path}",
    ]
    cli = main(args + TINY + TINY_SHAPES)
    assert cli.datamodule.train_dataset.shortcut and not cli.datamodule.val_dataset.shortcut
    assert isinstance(cli.trainer.logger, TensorBoardLogger)
    events = read_events(cli.trainer.logger.log_dir)
    assert [e.step for e in events.Images("cam/model.features.7/gradcam")] == [0, 2, 5]


def test_imagefolder_config_trains_on_a_folder_of_images(tmp_path):
    folder = _image_folder(tmp_path / "images")
    args = [
        "fit", "--config", str(ROOT / "configs" / "imagefolder.yaml"),
        f"--trainer.logger.init_args.save_dir={tmp_path}",
        f"--data.init_args.train_dir={folder}",
        "--data.init_args.image_size=64", "--data.init_args.batch_size=4", "--data.init_args.num_workers=0",
        "--model.init_args.num_classes=2",
    ]
    cli = main(args + TINY)
    assert isinstance(cli.trainer.logger, TensorBoardLogger)
    events = read_events(cli.trainer.logger.log_dir)
    overlays = events.Images("cam/model.layer4/gradcam")
    # training starts; 8 training images (80 % of 10) in batches of 4; at the step of val/acc, one before
    # the optimizer step
    assert [e.step for e in overlays][1:] == [e.step for e in events.Scalars("val/acc")] == [1, 3]
    assert overlays[0].step == 0
    # validation holds 1 image of each class (20 % of 5), so the grid has 2 tiles of 64x64 side by side,
    # shown twice as large (the smallest whole factor that reaches 128 px)
    assert (overlays[0].width, overlays[0].height) == (2 * 128 + 3 * 2, 128 + 2 * 2)


def test_a_wrong_number_of_classes_names_the_fix(tmp_path):
    folder = _image_folder(tmp_path / "images", classes=3, per_class=2)
    args = [
        "fit", "--config", str(ROOT / "configs" / "imagefolder.yaml"),
        f"--trainer.logger.init_args.save_dir={tmp_path}", f"--data.init_args.train_dir={folder}",
        "--data.init_args.num_workers=0",
    ]
    with pytest.raises(ValueError, match=r"has 3 classes \(class_0, class_1, class_2\).*num_classes=3"):
        main(args + TINY)


def test_python_dash_m_entry_point_prints_help():
    result = subprocess.run(
        [sys.executable, "-m", "cam_callback", "fit", "--help"], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    assert "--trainer.callbacks" in result.stdout and "--config" in result.stdout



@pytest.mark.parametrize("entry", ["pytorch_lightning", "lightning"])
def test_fit_help_says_where_the_callback_and_its_options_are(entry, capsys):
    from cam_callback.demo.lightning import main as unified_main

    run = main if entry == "pytorch_lightning" else unified_main
    with pytest.raises(SystemExit) as exited:
        run(["fit", "--help"])
    assert exited.value.code == 0
    said = " ".join(capsys.readouterr().out.split())  # the help text is wrapped to the terminal
    assert "--trainer.callbacks+=GradCAMCallback" in said
    assert "--trainer.callbacks.help GradCAMCallback" in said
    # ... and the command it names lists every keyword of the callback.
    with pytest.raises(SystemExit) as exited:
        run(["fit", "--trainer.callbacks.help", "GradCAMCallback"])
    assert exited.value.code == 0
    listed = {word.strip("[],") for word in capsys.readouterr().out.split()}  # "[--a", "--a," -> "--a"
    keywords = [n for n in inspect.signature(GradCAMCallback.__init__).parameters if n != "self"]
    assert len(keywords) > 20
    # jsonargparse >= 4.3x lists `--trainer.callbacks.<name>`, 4.27 `--trainer.callbacks.init_args.<name>`.
    forms = ("--trainer.callbacks.{}", "--trainer.callbacks.init_args.{}")
    missing = [name for name in keywords if not any(f.format(name) in listed for f in forms)]
    assert missing == []
