"""An image-classifier LightningModule around a torchvision classification model, or a tiny CNN for demos."""

from __future__ import annotations

import difflib
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import pytorch_lightning as pl
import torch
import torchvision
from torch import Tensor, nn
from torch.nn import functional as F

__all__ = [
    "ImageClassifier", "ImageClassifierCore", "TinyCNN", "build_model", "model_names", "images_and_labels"
]

if TYPE_CHECKING:  # the mixin is typed as a LightningModule; at run time each flavour adds its own base
    _LightningModule = pl.LightningModule
else:
    _LightningModule = object

TINY_CNN = "tinycnn"


def _conv_block(c_in: int, c_out: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(c_in, c_out, 3, padding=1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU())


class TinyCNN(nn.Module):
    """A small convolutional classifier, quick to train on a CPU at 64x64.

    ``features`` is four 3x3 conv-BatchNorm-ReLU blocks with three 2x2 max-pools in between, ending in a
    plain 3x3 convolution (``features.-1``, the natural Grad-CAM layer: ``[B, 4 * width, H/8, W/8]``).
    ``head`` applies BatchNorm, ReLU, global max pooling and a linear layer. Max rather than average pooling
    lets one strong local response decide a channel, which trains several times faster from scratch on small
    objects (and on small shortcut markers) than averaging over the whole map.

    Args:
        num_classes: number of output logits.
        width: channels of the first block; later blocks use two and four times as many.

    """

    def __init__(self, num_classes: int, width: int = 16) -> None:
        super().__init__()
        w = width
        self.features = nn.Sequential(
            _conv_block(3, w),
            nn.MaxPool2d(2),
            _conv_block(w, 2 * w),
            nn.MaxPool2d(2),
            _conv_block(2 * w, 4 * w),
            _conv_block(4 * w, 4 * w),
            nn.MaxPool2d(2),
            nn.Conv2d(4 * w, 4 * w, 3, padding=1),
        )
        self.head = nn.Sequential(
            nn.BatchNorm2d(4 * w),
            nn.ReLU(),
            nn.AdaptiveMaxPool2d(1),
            nn.Flatten(),
            nn.Linear(4 * w, num_classes),
        )

    def forward(self, x: Tensor) -> Tensor:
        """Logits ``[B, num_classes]`` for images ``[B, 3, H, W]`` (any size of at least 8x8)."""
        logits: Tensor = self.head(self.features(x))
        return logits


def model_names() -> list[str]:
    """Names :func:`build_model` accepts: ``"tinycnn"`` and torchvision's classification models."""
    return [TINY_CNN, *torchvision.models.list_models(module=torchvision.models)]


def build_model(arch: str, num_classes: int) -> nn.Module:
    """Build a randomly initialised classifier with ``num_classes`` outputs.

    Args:
        arch: ``"tinycnn"`` (:class:`TinyCNN`) or a torchvision classification model name such as
            ``"resnet18"``, built with ``torchvision.models.get_model(arch, weights=None, ...)``.
        num_classes: number of output logits.

    Raises:
        TypeError: ``arch`` is not a string.
        ValueError: ``arch`` is unknown; the message lists the closest valid names.

    """
    if not isinstance(arch, str):
        raise TypeError(f"`arch` must be a model name (str), got {type(arch).__name__}")
    if arch == TINY_CNN:
        return TinyCNN(num_classes)
    names = model_names()
    if arch not in names:
        close = difflib.get_close_matches(arch, names, n=5, cutoff=0.5)
        hint = f"; closest: {', '.join(repr(n) for n in close)}" if close else ""
        raise ValueError(
            f"`arch`: unknown model {arch!r}{hint}. Use 'tinycnn' or a name from "
            "torchvision.models.list_models(module=torchvision.models)"
        )
    model: nn.Module = torchvision.models.get_model(arch, weights=None, num_classes=num_classes)
    return model


def images_and_labels(batch: Any) -> tuple[Tensor, Tensor]:
    """Return ``(images, labels)`` from a dict batch (``"image"``, ``"label"``) or an ``(x, y)`` tuple.

    Raises:
        TypeError: the batch is neither.

    """
    if isinstance(batch, Mapping):
        if "image" not in batch or "label" not in batch:
            raise TypeError(f"a dict batch needs the keys 'image' and 'label', got {sorted(batch)}")
        return batch["image"], batch["label"]
    if isinstance(batch, Sequence) and not isinstance(batch, str) and len(batch) >= 2:
        return batch[0], batch[1]
    raise TypeError(
        "a batch must be a dict with 'image' and 'label' or an (image, label) tuple, "
        f"got {type(batch).__name__}"
    )


class ImageClassifierCore(_LightningModule):
    """Trains a classifier with cross-entropy and AdamW, logging loss and accuracy.

    A mixin written once for both Lightning namespaces: :class:`ImageClassifier` is the
    ``pytorch_lightning`` flavour, :class:`cam_callback.demo.lightning.ImageClassifier` the
    ``lightning.pytorch`` one.

    The network is ``self.model``, so its layers are addressed as ``"model.<path>"`` from the LightningModule
    (``"model.layer4"`` for a ResNet, ``"model.features.-1"`` for ``"tinycnn"``). Batches may be dicts with
    ``"image"`` and ``"label"`` or ``(image, label)`` tuples.

    Logged: ``train/loss`` (every step), ``train/acc`` (epoch mean), ``val/loss`` and ``val/acc`` (epoch
    means), and ``test/loss`` / ``test/acc`` when testing.

    Args:
        arch: ``"tinycnn"`` or a torchvision classification model name (randomly initialised).
        num_classes: number of classes.
        lr: AdamW learning rate.
        weight_decay: AdamW weight decay.
        cosine: decay the learning rate to zero along a cosine over the whole run (``max_epochs`` or
            ``max_steps``), stepped every optimisation step.

    Raises:
        ValueError: unknown ``arch`` or a non-positive ``num_classes`` or ``lr``, or a negative
            ``weight_decay``.

    """

    def __init__(
        self,
        arch: str = "resnet18",
        num_classes: int = 4,
        lr: float = 1e-3,
        weight_decay: float = 1e-2,
        cosine: bool = False,
    ) -> None:
        super().__init__()
        if isinstance(num_classes, bool) or not isinstance(num_classes, int):
            raise TypeError(f"`num_classes` must be an int, got {type(num_classes).__name__}")
        if num_classes < 1:
            raise ValueError(f"`num_classes` must be >= 1, got {num_classes}")
        if not lr > 0:
            raise ValueError(f"`lr` must be > 0, got {lr}")
        if not weight_decay >= 0:
            raise ValueError(f"`weight_decay` must be >= 0, got {weight_decay}")
        self.save_hyperparameters()
        self.model = build_model(arch, num_classes)
        self.num_classes = num_classes
        self.lr = lr
        self.weight_decay = weight_decay
        self.cosine = cosine

    def forward(self, x: Tensor) -> Tensor:
        """Logits ``[B, num_classes]`` for images ``[B, 3, H, W]``.

        Models whose training-mode output carries auxiliary heads (GoogLeNet, Inception v3) give their main
        logits.
        """
        out = self.model(x)
        if isinstance(out, Tensor):
            return out
        logits = getattr(out, "logits", None)
        return logits if isinstance(logits, Tensor) else out[0]

    def setup(self, stage: str) -> None:
        """Check ``num_classes`` against the data module's, if it tells (a mismatch fails late otherwise)."""
        datamodule = getattr(self.trainer, "datamodule", None) if self._trainer is not None else None
        expected = getattr(datamodule, "num_classes", None)
        if isinstance(expected, int) and expected != self.num_classes:
            classes = getattr(datamodule, "classes", None)
            more = ", ..." if classes and len(classes) > 10 else ""
            named = f" ({', '.join(map(str, classes[:10]))}{more})" if classes else ""
            raise ValueError(
                f"`num_classes` is {self.num_classes} but the data has {expected} classes{named}; "
                f"set num_classes={expected} (on the command line: --model.init_args.num_classes={expected})"
            )

    def _shared_step(self, batch: Any, stage: str) -> Tensor:
        x, y = images_and_labels(batch)
        logits = self(x)
        loss = F.cross_entropy(logits, y)
        acc = (logits.detach().argmax(dim=1) == y).float().mean()
        n = int(y.shape[0])
        if stage == "train":
            self.log("train/loss", loss, on_step=True, on_epoch=False, prog_bar=True, batch_size=n)
            self.log("train/acc", acc, on_step=False, on_epoch=True, prog_bar=True, batch_size=n)
        else:
            self.log(f"{stage}/loss", loss, on_epoch=True, prog_bar=True, batch_size=n, sync_dist=True)
            self.log(f"{stage}/acc", acc, on_epoch=True, prog_bar=True, batch_size=n, sync_dist=True)
        return loss

    def training_step(self, batch: Any, batch_idx: int) -> Tensor:
        """Cross-entropy on one training batch; logs ``train/loss`` and ``train/acc``."""
        return self._shared_step(batch, "train")

    def validation_step(self, batch: Any, batch_idx: int) -> Tensor:
        """Cross-entropy on one validation batch; logs ``val/loss`` and ``val/acc``."""
        return self._shared_step(batch, "val")

    def test_step(self, batch: Any, batch_idx: int) -> Tensor:
        """Cross-entropy on one test batch; logs ``test/loss`` and ``test/acc``."""
        return self._shared_step(batch, "test")

    def configure_optimizers(self) -> Any:
        """AdamW, plus a per-step cosine decay when ``cosine`` is set."""
        optimizer = torch.optim.AdamW(self.parameters(), lr=self.lr, weight_decay=self.weight_decay)
        if not self.cosine:
            return optimizer
        total = max(1, int(self.trainer.estimated_stepping_batches))
        scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=total)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}


class ImageClassifier(ImageClassifierCore, pl.LightningModule):
    """The classifier for ``pytorch_lightning``; its arguments and behaviour: :class:`ImageClassifierCore`."""
