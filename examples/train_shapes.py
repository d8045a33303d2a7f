"""Train a tiny CNN on synthetic shapes and watch where it looks, in plain Python.

This is ``configs/demo.yaml`` (and, with ``--shortcut``, ``configs/shortcut.yaml``) written out without
LightningCLI: a Trainer, a TensorBoardLogger, the ShapesDataModule, an ImageClassifier and the
GradCAMCallback. With the default options it trains exactly what the YAML trains (about a minute on two
CPU cores)::

    python examples/train_shapes.py                # -> logs/demo/version_N
    python examples/train_shapes.py --shortcut     # -> logs/shortcut/version_N
    .venv/bin/python -m tensorboard.main --logdir logs --samples_per_plugin images=1000

TensorBoard then shows, at every validation:

* images ``cam/<layer>/<method>``: Grad-CAM blended over 16 fixed validation images, captioned with the true
  class ``y``, the predicted class ``p`` and the probability of ``y``; ``cam_heatmap/...`` the bare maps;
  ``cam_summary/...`` (once, at the end) one row per image and one column per validation;
* scalars ``cam_drift/<layer>/<method>/...``: how far the maps moved since the previous / first validation
  (``change_*``, ``shift_*``), and, since the shapes come with object masks, ``energy_in_mask`` (share of the
  map on the object) and ``pointing_game`` (share of maps whose peak lies on the object).

Layers are logged under their resolved names: ``model.features.-1`` appears as ``model.features.7``.
"""

from __future__ import annotations

import argparse

import pytorch_lightning as pl
from pytorch_lightning.loggers import TensorBoardLogger

from cam_callback import GradCAMCallback
from cam_callback.demo import ShapesDataModule
from cam_callback.demo.classifier import ImageClassifier
from cam_callback.demo.cli_report import tensorboard_command


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--epochs", type=int, default=6, help="training epochs (default: 6)")
    parser.add_argument(
        "--shortcut", action="store_true",
        help="paint a class-coded marker on every training image (never on validation images)",
    )
    parser.add_argument("--log-dir", default="logs", help="TensorBoard root folder (default: logs)")
    parser.add_argument("--seed", type=int, default=0, help="seeds the weights and picks the data")
    # Sizes: the defaults are the YAML's; a test shrinks them to run in seconds.
    parser.add_argument("--num-train", type=int, default=2000, help="training images")
    parser.add_argument("--num-val", type=int, default=256, help="validation images")
    parser.add_argument("--image-size", type=int, default=64, help="image side in pixels (>= 16)")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--num-samples", type=int, default=16, help="validation images explained each time")
    parser.add_argument("--quiet", action="store_true", help="no progress bar or model summary")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> str:
    """Train, and return the run's log directory."""
    args = parse_args(argv)
    pl.seed_everything(args.seed, workers=True)  # as `seed_everything: 0` in the YAML

    # 2000 training and 256 validation images of 4 shapes (circle, square, triangle, cross), drawn on the
    # fly from fixed seeds. Every sample is a dict {"image", "label", "mask"}; the mask marks the object.
    data = ShapesDataModule(
        num_train=args.num_train,
        num_val=args.num_val,
        image_size=args.image_size,
        num_classes=4,
        batch_size=args.batch_size,
        num_workers=0,
        seed=args.seed,
        shortcut=args.shortcut,
    )

    # A small CNN (randomly initialised); inside the LightningModule the network is `self.model`, so its
    # layers are addressed as "model.<path>".
    model = ImageClassifier(arch="tinycnn", num_classes=4, lr=1e-3, weight_decay=1e-2)

    # The callback: after every validation, explain the first `num_samples` validation images.
    cam = GradCAMCallback(
        # The last convolution (8x8 maps at 64x64 input) and the block before it (16x16).
        layer=["model.features.-1", "model.features.5"],
        method=["gradcam", "gradcam++"],  # both come from the same forward and backward pass
        num_samples=args.num_samples,
        target="label",  # explain the true class: the same question every epoch
        every_n_epochs=1,
        alpha=0.5,  # heatmap opacity over the image
        colormap="jet",
        mean=list(data.mean),  # undo the data's normalisation for display
        std=list(data.std),
    )

    logger = TensorBoardLogger(args.log_dir, name="shortcut" if args.shortcut else "demo")
    trainer = pl.Trainer(
        max_epochs=args.epochs,
        deterministic=True,
        accelerator="auto",
        devices=1,
        log_every_n_steps=10,
        logger=logger,
        callbacks=[cam],
        enable_progress_bar=not args.quiet,
        enable_model_summary=not args.quiet,
    )
    trainer.fit(model, datamodule=data)

    print(f"run written to {logger.log_dir}")
    print(f"view it with: {tensorboard_command(args.log_dir)}")
    return logger.log_dir


if __name__ == "__main__":
    main()
