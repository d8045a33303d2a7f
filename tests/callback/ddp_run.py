"""A 2-process CPU DDP fit (gloo), run as a script by test_ddp.py.

Usage: ``python ddp_run.py OUT_DIR with|without|bad [cpu|gpu]`` (``bad``: a class index out of range;
``gpu``: two GPUs under NCCL instead of two CPU processes under gloo).
"""

from __future__ import annotations

import json
import os
import sys
from typing import Any, cast

import pytorch_lightning as pl
import torch
from lit_models import SpatialMean, loaders, make_module_class
from pytorch_lightning.callbacks import EarlyStopping, ModelCheckpoint
from pytorch_lightning.loggers import TensorBoardLogger

from cam_callback import GradCAMCallback

MONITOR = "cam_drift/features.3/gradcam/energy_in_mask"


def main(out_dir: str, mode: str, accelerator: str = "cpu") -> None:
    pl.seed_everything(3, verbose=False)
    model = make_module_class(pl)()
    if accelerator == "gpu":
        model.head[0] = SpatialMean()  # deterministic on CUDA
    options: dict[str, dict[str, Any]] = {"with": {}, "bad": {"target": 99}}
    callbacks: list[pl.Callback] = []
    if mode in options:
        callbacks = [GradCAMCallback(layer="features.3", num_samples=4, strict=True, **options[mode])]
    if mode == "with":  # every rank must see the drift numbers to monitor them (and agree on them)
        callbacks += [
            EarlyStopping(monitor=MONITOR, mode="max", patience=10),
            ModelCheckpoint(dirpath=os.path.join(out_dir, "ckpt"), monitor=MONITOR, mode="max"),
        ]
    trainer = pl.Trainer(
        accelerator=accelerator,
        devices=2,
        strategy="ddp",
        max_epochs=2,
        callbacks=list(callbacks),
        logger=TensorBoardLogger(out_dir, name="logs"),
        deterministic=True,
        enable_checkpointing=mode == "with",
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    train, val = loaders(n_train=16, dict_batches=True)
    trainer.fit(model, train, val)
    rank = trainer.global_rank
    weights = {k: v.clone() for k, v in model.state_dict().items()}
    torch.save(weights, os.path.join(out_dir, f"weights{rank}.pt"))
    if mode == "with":
        cam, keeper = cast(GradCAMCallback, callbacks[0]), cast(ModelCheckpoint, callbacks[2])
        with open(os.path.join(out_dir, f"history{rank}.txt"), "w") as f:
            f.write(str(len(cam.history)))
        seen = {k: float(v) for k, v in trainer.callback_metrics.items() if k.startswith("cam_drift/")}
        assert keeper.best_model_score is not None
        seen["best"] = float(keeper.best_model_score)
        with open(os.path.join(out_dir, f"metrics{rank}.json"), "w") as f:
            json.dump(seen, f)


if __name__ == "__main__":
    torch.set_num_threads(1)
    main(*sys.argv[1:4])
