"""LightningModules for the demo's other tasks: a segmenter, a detector, a multi-label and a regression CNN.

Each holds its network as ``self.model`` (layers are ``"model.<path>"``), trains on
:class:`~cam_callback.demo.task_data.ShapesTaskDataModule` batches and logs ``train/loss`` and
``val/loss`` (the detector logs its box count in validation instead: torchvision's detectors give no loss
in eval mode).
"""

from __future__ import annotations

from typing import Any

import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from torch import Tensor
from torchvision.models import segmentation
from torchvision.models.detection import fasterrcnn_mobilenet_v3_large_320_fpn

from ..core.checks import check_float, check_int
from .classifier import TinyCNN

__all__ = ["ShapesDetector", "ShapesMultiLabel", "ShapesRegressor", "ShapesSegmenter"]


class _Trained(pl.LightningModule):
    """AdamW on every parameter; ``loss(batch)`` defined by each task."""

    def __init__(self, lr: float) -> None:
        super().__init__()
        self.lr = check_float("lr", lr, low=0.0)

    def loss(self, batch: Any) -> Tensor:
        """The task's loss on ``batch``."""
        raise NotImplementedError

    def training_step(self, batch: Any, batch_idx: int) -> Tensor:
        """One optimisation step's loss; logs ``train/loss``."""
        loss = self.loss(batch)
        self.log("train/loss", loss, on_step=True, on_epoch=False)
        return loss

    def validation_step(self, batch: Any, batch_idx: int) -> None:
        """Logs ``val/loss``."""
        self.log("val/loss", self.loss(batch), on_epoch=True)

    def configure_optimizers(self) -> Any:
        """AdamW."""
        return torch.optim.AdamW(self.parameters(), lr=self.lr)


class ShapesSegmenter(_Trained):
    """Torchvision's LR-ASPP on MobileNetV3-Large (random weights); outputs ``{"out": [B, C, H, W]}``.

    Args:
        num_classes: classes including the background (``1 + shape classes``).
        lr: AdamW learning rate.
    """

    def __init__(self, num_classes: int = 4, lr: float = 1e-3) -> None:
        super().__init__(lr)
        self.save_hyperparameters()
        self.model = segmentation.lraspp_mobilenet_v3_large(
            weights=None, weights_backbone=None, num_classes=check_int("num_classes", num_classes, minimum=2)
        )

    def forward(self, x: Tensor) -> dict[str, Tensor]:
        """``{"out": logits [B, C, H, W]}``."""
        out: dict[str, Tensor] = self.model(x)
        return out

    def loss(self, batch: Any) -> Tensor:
        """Pixel-wise cross-entropy against the batch's class map."""
        return F.cross_entropy(self(batch["image"])["out"], batch["mask"])


class ShapesDetector(_Trained):
    """Torchvision's Faster R-CNN on MobileNetV3-Large FPN (random weights), sized for small images.

    Args:
        num_classes: classes including the background (``1 + shape classes``).
        image_size: the images' side (the detector's ``min_size`` and ``max_size``).
        box_score_thresh: boxes below this score are dropped in eval mode (0.05 is torchvision's default;
            an untrained detector may keep none).
        lr: AdamW learning rate.
    """

    def __init__(
        self, num_classes: int = 4, image_size: int = 64, box_score_thresh: float = 0.05, lr: float = 1e-4
    ) -> None:
        super().__init__(lr)
        self.save_hyperparameters()
        size = check_int("image_size", image_size, minimum=16)
        self.model = fasterrcnn_mobilenet_v3_large_320_fpn(
            weights=None, weights_backbone=None, num_classes=check_int("num_classes", num_classes, minimum=2),
            min_size=size, max_size=size, box_score_thresh=check_float("box_score_thresh", box_score_thresh),
        )

    def forward(self, images: Tensor | list[Tensor]) -> Any:
        """Detections (eval mode): one dict of ``boxes``, ``labels``, ``scores`` per image."""
        return self.model(list(images))

    def loss(self, batch: Any) -> Tensor:
        """The sum of torchvision's detection losses (training mode)."""
        images, targets = batch
        losses = self.model(list(images), list(targets))
        return torch.stack(list(losses.values())).sum()

    def validation_step(self, batch: Any, batch_idx: int) -> None:
        """Logs ``val/boxes``, the mean number of boxes kept per image."""
        images, _ = batch
        detections = self(images)
        count = sum(len(d["boxes"]) for d in detections) / max(1, len(detections))
        self.log("val/boxes", float(count), on_epoch=True, batch_size=len(detections))


class ShapesMultiLabel(_Trained):
    """A :class:`TinyCNN` with one sigmoid per class (binary cross-entropy on multi-hot labels).

    Args:
        num_classes: shape classes.
        lr: AdamW learning rate.
    """

    def __init__(self, num_classes: int = 3, lr: float = 1e-3) -> None:
        super().__init__(lr)
        self.save_hyperparameters()
        self.model = TinyCNN(check_int("num_classes", num_classes, minimum=2))

    def forward(self, x: Tensor) -> Tensor:
        """Logits ``[B, num_classes]``."""
        logits: Tensor = self.model(x)
        return logits

    def loss(self, batch: Any) -> Tensor:
        """Binary cross-entropy with logits against the multi-hot labels."""
        return F.binary_cross_entropy_with_logits(self(batch["image"]), batch["label"].float())


class ShapesRegressor(_Trained):
    """A :class:`TinyCNN` with one output ``[B, 1]``, trained with the mean squared error.

    Args:
        lr: AdamW learning rate.
    """

    def __init__(self, lr: float = 1e-3) -> None:
        super().__init__(lr)
        self.save_hyperparameters()
        self.model = TinyCNN(1)

    def forward(self, x: Tensor) -> Tensor:
        """Predictions ``[B, 1]``."""
        prediction: Tensor = self.model(x)
        return prediction

    def loss(self, batch: Any) -> Tensor:
        """Mean squared error against the float labels ``[B]``."""
        return F.mse_loss(self(batch["image"])[:, 0], batch["label"].float())
