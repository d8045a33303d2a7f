"""Tiny Lightning modules and data for the callback tests (both Lightning namespaces)."""

from __future__ import annotations

import types
from typing import Any, cast

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset, TensorDataset


def tiny_data(n: int, seed: int, size: int = 16, classes: int = 3) -> TensorDataset:
    g = torch.Generator().manual_seed(seed)
    return TensorDataset(
        torch.randn(n, 3, size, size, generator=g), torch.randint(0, classes, (n,), generator=g)
    )


class DictData(Dataset):
    """Dict samples with a mask, and a random transform drawing from the global RNG (as augmentations do)."""

    def __init__(self, n: int, seed: int, size: int = 16) -> None:
        self.base = tiny_data(n, seed, size)
        self.size = size

    def __len__(self) -> int:
        return len(self.base)

    def __getitem__(self, i: int) -> dict:
        x, y = self.base[i]
        x = x + 0.01 * torch.randn_like(x)  # draws from the global generator
        mask = torch.zeros(self.size, self.size)
        mask[4:12, 4:12] = 1
        return {"image": x, "label": y, "mask": mask}


class SpatialMean(nn.Module):
    """``AdaptiveAvgPool2d(1)`` written as a mean: the pooling's CUDA backward has no deterministic kernel,
    so a ``deterministic=True`` run on a GPU puts this in the tiny modules' head instead (``head[0]``)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.mean(dim=(2, 3), keepdim=True)


def make_module_class(namespace: types.ModuleType) -> type:
    """A LightningModule class (BatchNorm, dropout, in-place ReLU).

    For ``pytorch_lightning`` or ``lightning.pytorch``, whichever ``namespace`` is.
    """
    lightning_module: Any = namespace.LightningModule  # only known at run time

    class TinyNet(lightning_module):
        def __init__(self, fail_on_val: bool = False) -> None:
            super().__init__()
            self.features = nn.Sequential(
                nn.Conv2d(3, 8, 3, padding=1),
                nn.BatchNorm2d(8),
                nn.ReLU(inplace=True),
                nn.Conv2d(8, 8, 3, padding=1),
                nn.ReLU(inplace=True),
            )
            self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Dropout(0.3), nn.Linear(8, 3))
            self.train_steps = 0

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return cast(torch.Tensor, self.head(self.features(x)))

        @staticmethod
        def _xy(batch):
            return (batch["image"], batch["label"]) if isinstance(batch, dict) else batch

        def training_step(self, batch, index):
            self.train_steps += 1
            x, y = self._xy(batch)
            return nn.functional.cross_entropy(self(x), y)

        def validation_step(self, batch, index):
            x, y = self._xy(batch)
            self.log("val_loss", nn.functional.cross_entropy(self(x), y))

        def configure_optimizers(self):
            return torch.optim.AdamW(self.parameters(), lr=0.05)

    return TinyNet


def loaders(n_train: int = 12, n_val: int = 8, batch_size: int = 2, dict_batches: bool = False):
    train: Dataset
    val: Dataset
    if dict_batches:
        train, val = DictData(n_train, 1), DictData(n_val, 2)
    else:
        train, val = tiny_data(n_train, 1), tiny_data(n_val, 2)
    return DataLoader(train, batch_size=batch_size, shuffle=True), DataLoader(val, batch_size=batch_size)


def stand_in_trainer(root: Any, step: int, rank_zero: bool = True, epoch: int = 0) -> Any:
    """What the callback reads from a Trainer, for one process: dict batches of :func:`loaders`, no logger."""
    from pytorch_lightning.plugins.precision import Precision

    train, val = loaders(dict_batches=True)
    return types.SimpleNamespace(
        precision_plugin=Precision(), is_global_zero=rank_zero, global_step=step, val_dataloaders=val,
        train_dataloader=train, loggers=[], default_root_dir=str(root), fast_dev_run=False,
        current_epoch=epoch,
    )


def measured_samples(count: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The dict validation data's first ``count`` samples (:func:`loaders`), each read with the CPU generator
    seeded by its index, as the measured set reads them."""
    data, images, labels = DictData(8, 2), [], []
    state = torch.get_rng_state()
    for i in range(count):
        torch.manual_seed(i)
        sample = data[i]
        images.append(sample["image"])
        labels.append(sample["label"])
    torch.set_rng_state(state)
    return torch.stack(images), torch.stack(labels)


def fresh_run(options: Any) -> Any:
    """A new run's state for the callback ``options`` (a measured history when they ask for one)."""
    import pytorch_lightning as pl

    from cam_callback.callback.history import MapHistory
    from cam_callback.callback.loggers import RunOutput
    from cam_callback.callback.measure import MeasuredHistory
    from cam_callback.callback.reporting import Reporter
    from cam_callback.callback.run import RunState
    from cam_callback.callback.trainer import LightningNamespace

    reporter = Reporter("Test", strict=False)
    output = RunOutput(LightningNamespace.of(pl.loggers, pl.strategies), options.tag_prefix, reporter)
    measured = MeasuredHistory(options.history_size) if options.measure_samples is not None else None
    history = MapHistory(options.history_size)
    return RunState(history, reporter, output, layers=options.layers, measured=measured)
