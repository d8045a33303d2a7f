"""The synthetic shapes recast for other tasks: segmentation, detection, multi-label and regression.

Each sample is drawn by :class:`~cam_callback.demo.shapes.ShapesDataset` (same seeds, so a task dataset
and the classification one hold the same pictures) and labelled for its task:

* ``"segmentation"``: ``{"image", "mask"}``, the mask an int64 ``[H, W]`` map of classes (0 background,
  ``1 + shape class`` on the object);
* ``"detection"``: ``(image, {"boxes": [1, 4], "labels": [1]})``, torchvision's detection layout (the
  object's bounding box, label ``1 + shape class``), collated by :func:`detection_collate`;
* ``"multilabel"``: ``{"image", "label", "mask"}``: two shapes side by side (``[3, H, 2W]``), the label
  multi-hot ``[num_classes]`` float over the shapes present;
* ``"regression"``: ``{"image", "label", "mask"}``, the label the float share of the image the object
  covers.
"""

from __future__ import annotations

from typing import Any

import pytorch_lightning as pl
import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset, default_collate

from ..core.checks import check_choice, check_int
from .shapes import ShapesDataset

__all__ = ["TASKS", "ShapesTaskDataModule", "ShapesTaskDataset", "detection_collate"]

TASKS = ("segmentation", "detection", "multilabel", "regression")


def detection_collate(batch: list[Any]) -> tuple[Any, ...]:
    """Torchvision's detection collate: a list of ``(image, target)`` into ``(images, targets)`` tuples."""
    return tuple(zip(*batch, strict=True))


def _box(mask: Tensor) -> Tensor:
    """The bounding box ``[1, 4]`` (x1, y1, x2, y2; x2, y2 exclusive) of a bool mask's True pixels."""
    ys, xs = mask.nonzero(as_tuple=True)
    return torch.tensor([[xs.min(), ys.min(), xs.max() + 1, ys.max() + 1]], dtype=torch.float32)


class ShapesTaskDataset(Dataset):
    """:class:`ShapesDataset` labelled for ``task`` (see the module's docstring for each sample's layout).

    Args:
        task: ``"segmentation"``, ``"detection"``, ``"multilabel"`` or ``"regression"``.
        length, image_size, num_classes, seed: as for :class:`ShapesDataset`.
    """

    def __init__(
        self, task: str, length: int = 256, image_size: int = 64, num_classes: int = 4, seed: int = 0
    ) -> None:
        self.task = check_choice("task", task, TASKS)
        self.shapes = ShapesDataset(length, image_size=image_size, num_classes=num_classes, seed=seed)
        # the second shape of a multi-label picture: another dataset, so its class varies independently
        self.others = ShapesDataset(length, image_size=image_size, num_classes=num_classes, seed=seed + 7919)

    def __len__(self) -> int:
        return len(self.shapes)

    def __getitem__(self, index: int) -> Any:
        sample = self.shapes[index]
        image, label, mask = sample["image"], sample["label"], sample["mask"]
        if self.task == "segmentation":
            return {"image": image, "mask": torch.where(mask, label + 1, 0)}
        if self.task == "detection":
            return image, {"boxes": _box(mask), "labels": (label + 1).reshape(1)}
        if self.task == "regression":
            return {"image": image, "label": mask.float().mean(), "mask": mask}
        other = self.others[(index * 3 + 1) % len(self.others)]
        labels = torch.zeros(self.shapes.num_classes)
        labels[label] = 1.0
        labels[other["label"]] = 1.0
        return {
            "image": torch.cat([image, other["image"]], dim=2),
            "label": labels,
            "mask": torch.cat([mask, other["mask"]], dim=1),
        }


class ShapesTaskDataModule(pl.LightningDataModule):
    """Train and validation splits of :class:`ShapesTaskDataset` (seeds ``2 * seed`` and ``2 * seed + 1``).

    Args:
        task: ``"segmentation"``, ``"detection"``, ``"multilabel"`` or ``"regression"``.
        num_train, num_val: samples per split.
        image_size: height and width of each shape's picture.
        num_shapes: shape classes (2 to 8); a segmenter or detector has one class more, the background.
        batch_size: samples per batch.
        seed: picks both splits.
    """

    def __init__(
        self,
        task: str = "segmentation",
        num_train: int = 64,
        num_val: int = 16,
        image_size: int = 64,
        num_shapes: int = 3,
        batch_size: int = 8,
        seed: int = 0,
    ) -> None:
        super().__init__()
        self.task = check_choice("task", task, TASKS)
        self.save_hyperparameters()
        self.splits = {
            "train": (check_int("num_train", num_train, minimum=1), 2 * seed),
            "val": (check_int("num_val", num_val, minimum=1), 2 * seed + 1),
        }
        self.image_size = check_int("image_size", image_size, minimum=16)
        self.num_shapes = check_int("num_shapes", num_shapes, minimum=2)
        self.batch_size = check_int("batch_size", batch_size, minimum=1)
        self.mean: tuple[float, ...] = ShapesDataset.MEAN
        self.std: tuple[float, ...] = ShapesDataset.STD
        self.train_dataset: ShapesTaskDataset | None = None
        self.val_dataset: ShapesTaskDataset | None = None

    def setup(self, stage: str) -> None:
        """Build both splits."""
        (num_train, train_seed), (num_val, val_seed) = self.splits["train"], self.splits["val"]
        task, size, shapes = self.task, self.image_size, self.num_shapes
        self.train_dataset = ShapesTaskDataset(task, num_train, size, shapes, train_seed)
        self.val_dataset = ShapesTaskDataset(task, num_val, size, shapes, val_seed)

    def _loader(self, dataset: Dataset | None, shuffle: bool) -> DataLoader:
        if dataset is None:
            raise RuntimeError("call setup() first")
        collate = detection_collate if self.task == "detection" else default_collate
        return DataLoader(dataset, batch_size=self.batch_size, shuffle=shuffle, collate_fn=collate)

    def train_dataloader(self) -> DataLoader:
        """Shuffled training batches."""
        return self._loader(self.train_dataset, shuffle=True)

    def val_dataloader(self) -> DataLoader:
        """Validation batches, in order."""
        return self._loader(self.val_dataset, shuffle=False)
