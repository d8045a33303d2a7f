"""What the command-line tests share: the demo's config and a one-epoch run small enough for a test."""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DEMO = str(ROOT / "configs" / "demo.yaml")
# One epoch of 2 batches of 8 images of 32x32, one validation batch, 2 explained samples.
TINY = [
    "--trainer.max_epochs=1", "--trainer.limit_train_batches=2", "--trainer.limit_val_batches=1",
    "--trainer.enable_progress_bar=false", "--trainer.enable_model_summary=false",
    "--trainer.callbacks.init_args.num_samples=2", "--data.init_args.num_train=16",
    "--data.init_args.num_val=8", "--data.init_args.image_size=32", "--data.init_args.batch_size=8",
]
