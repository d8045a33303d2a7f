"""A 2-process CPU DDP fit (gloo), run as a script by test_ddp.py.

Usage: ``python ddp_run.py OUT_DIR with|without|bad|measure|measure1|measure_fail [cpu|gpu]`` (``bad``: a
class index out of range; ``measure``: a validation, then a fit, with ``measure_samples``, each rank's metrics
saved; ``measure1``: that validation in one process; ``measure_fail``: a fit whose rank 1 fails to explain
its share at the first validation after the first maps; ``gpu``: two GPUs under NCCL instead of two CPU
processes under gloo).
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


MEASURE: dict[str, Any] = dict(layer="features.3", num_samples=2, measure_samples="all", chunk_size=3)


def cam_metrics(trainer: pl.Trainer) -> dict[str, float]:
    return {k: float(v) for k, v in trainer.callback_metrics.items() if k.startswith("cam_drift/")}


def measured(out_dir: str, mode: str, accelerator: str) -> None:
    """Validate (and fit) with a measured set of all 8 validation samples; save each rank's numbers."""
    import warnings

    import cam_callback.callback.measure as measure

    pl.seed_everything(3, verbose=False)
    model = make_module_class(pl)()
    if accelerator == "gpu":
        model.head[0] = SpatialMean()
    devices = 1 if mode == "measure1" else 2
    os.makedirs(out_dir, exist_ok=True)
    common: dict[str, Any] = dict(
        default_root_dir=out_dir,
        accelerator=accelerator, devices=devices, strategy="ddp" if devices == 2 else "auto",
        enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False, logger=False,
    )
    train, val = loaders(n_train=16, dict_batches=True)
    rank = int(os.environ.get("LOCAL_RANK", "0"))
    if mode == "measure_fail":
        real, calls = measure.take_samples, [0]

        def failing(*args: Any, **kwargs: Any) -> Any:
            calls[0] += 1
            if rank == 1 and calls[0] > 2:  # the first maps pass (2 chunks of rank 1's 4), then it fails
                raise OSError("rank 1 cannot read its samples")
            return real(*args, **kwargs)

        measure.take_samples = failing
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            trainer = pl.Trainer(max_epochs=2, callbacks=[GradCAMCallback(**MEASURE)], **common)
            trainer.fit(model, train, val)
        skipped = [str(w.message) for w in caught if "skipped the maps" in str(w.message)]
        with open(os.path.join(out_dir, f"skipped{rank}.json"), "w") as f:
            json.dump({"skipped": skipped, "steps": trainer.global_step}, f)
        return
    seen: dict[str, Any] = {}
    trainer = pl.Trainer(callbacks=[GradCAMCallback(**MEASURE)], **common)
    trainer.validate(model, val, verbose=False)
    seen["validate"] = cam_metrics(trainer)
    if mode == "measure":
        trainer = pl.Trainer(max_epochs=2, callbacks=[GradCAMCallback(**MEASURE)], **common)
        trainer.fit(model, train, val)
        seen["fit"] = cam_metrics(trainer)
    with open(os.path.join(out_dir, f"measured{rank}.json"), "w") as f:
        json.dump(seen, f)


def main(out_dir: str, mode: str, accelerator: str = "cpu") -> None:
    if mode.startswith("measure"):
        return measured(out_dir, mode, accelerator)
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
