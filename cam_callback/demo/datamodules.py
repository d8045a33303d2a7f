"""Lightning data modules: the synthetic shapes, and any folder of images laid out one folder per class.

Both expose ``mean``, ``std`` (the per-channel normalisation of their images, so a picture can be shown as it
was) and ``num_classes`` from construction on, and ``train_dataset`` / ``val_dataset`` after ``setup``.
Batches collate with PyTorch's default collate: dicts ``{"image", "label", "mask"}`` for the shapes,
``(image, label)`` tuples for image folders.
"""

from __future__ import annotations

import difflib
import os
from pathlib import Path
from typing import TYPE_CHECKING

import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader, Dataset
from torchvision import datasets
from torchvision.transforms import v2

from .shapes import ShapesDataset

__all__ = [
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "ImageFolderDataModule",
    "ImageFolderDataModuleCore",
    "ShapesDataModule",
    "ShapesDataModuleCore",
]

if TYPE_CHECKING:  # the mixins are typed as data modules; at run time each flavour adds its own base
    _DataModule = pl.LightningDataModule
else:
    _DataModule = object

IMAGENET_MEAN: tuple[float, float, float] = (0.485, 0.456, 0.406)
IMAGENET_STD: tuple[float, float, float] = (0.229, 0.224, 0.225)


def _check_positive(**values: int) -> None:
    for name, value in values.items():
        if isinstance(value, bool) or not isinstance(value, int):
            raise TypeError(f"`{name}` must be an int, got {type(value).__name__}")
        if value < 1:
            raise ValueError(f"`{name}` must be >= 1, got {value}")


def fitting_workers() -> int:
    """Loader workers that fit this machine: one per available CPU core beyond the first, at most 4."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not on every platform
        cores = os.cpu_count() or 1
    return max(0, min(4, cores - 1))


def _check_workers(num_workers: int | None) -> int:
    if num_workers is None:
        return fitting_workers()
    if isinstance(num_workers, bool) or not isinstance(num_workers, int):
        raise TypeError(f"`num_workers` must be an int or None, got {type(num_workers).__name__}")
    if num_workers < 0:
        raise ValueError(f"`num_workers` must be >= 0 (or None to fit the machine), got {num_workers}")
    return num_workers


def _loader(dataset: Dataset, batch_size: int, num_workers: int, shuffle: bool) -> DataLoader:
    return DataLoader(
        dataset,
        batch_size=batch_size,
        shuffle=shuffle,
        num_workers=num_workers,
        persistent_workers=num_workers > 0,
    )


class ShapesDataModuleCore(_DataModule):
    """Train and validation splits of :class:`~cam_callback.demo.shapes.ShapesDataset`.

    A mixin for both Lightning namespaces: :class:`ShapesDataModule` (``pytorch_lightning``),
    :class:`cam_callback.demo.lightning.ShapesDataModule` (``lightning.pytorch``).

    The two splits are drawn from different seeds (``2 * seed`` and ``2 * seed + 1``), so they never share
    an image, and the validation split never carries the shortcut marker: with ``shortcut=True`` the model
    can reach high training accuracy through the marker alone, which its validation accuracy and its CAMs
    then give away.

    Args:
        num_train: number of training images.
        num_val: number of validation images.
        image_size: height and width of the images.
        num_classes: number of shape classes (2 to 8).
        batch_size: images per batch, for both splits.
        num_workers: data-loading worker processes (0 loads in the main process).
        seed: picks both splits.
        shortcut: paint the class-coded marker on the training images (never on the validation images).

    """

    def __init__(
        self,
        num_train: int = 2000,
        num_val: int = 256,
        image_size: int = 64,
        num_classes: int = 4,
        batch_size: int = 32,
        num_workers: int = 0,
        seed: int = 0,
        shortcut: bool = False,
    ) -> None:
        super().__init__()
        _check_positive(num_train=num_train, num_val=num_val, batch_size=batch_size)
        _check_workers(num_workers)
        self.save_hyperparameters()
        # Built here (it is cheap: nothing is drawn before indexing) so bad arguments fail early.
        self.train_dataset = ShapesDataset(
            num_train, image_size, num_classes, seed=2 * seed, shortcut=shortcut
        )
        self.val_dataset = ShapesDataset(num_val, image_size, num_classes, seed=2 * seed + 1, shortcut=False)
        self.batch_size = batch_size
        self.num_workers = num_workers
        self.num_classes = num_classes
        self.mean: tuple[float, ...] = ShapesDataset.MEAN
        self.std: tuple[float, ...] = ShapesDataset.STD

    @property
    def classes(self) -> list[str]:
        """Class names, index ``k`` for label ``k``."""
        return self.train_dataset.classes

    def train_dataloader(self) -> DataLoader:
        """Return shuffled training batches of ``{"image": [B,3,H,W], "label": [B], "mask": [B,H,W]}``."""
        return _loader(self.train_dataset, self.batch_size, self.num_workers, shuffle=True)

    def val_dataloader(self) -> DataLoader:
        """Return validation batches in a fixed order, structured like the training batches."""
        return _loader(self.val_dataset, self.batch_size, self.num_workers, shuffle=False)


class _Transformed(Dataset):
    """A view of ``base`` restricted to ``indices`` that applies ``transform`` to each image."""

    def __init__(self, base: datasets.ImageFolder, indices: list[int], transform: v2.Transform) -> None:
        self.base = base
        self.indices = indices
        self.transform = transform

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        path, label = self.base.samples[self.indices[index]]
        return self.transform(self.base.loader(path)), label


def _stratified_split(targets: list[int], val_fraction: float, seed: int) -> tuple[list[int], list[int]]:
    """Split sample indices class by class; each class with two or more images gives at least one to val."""
    gen = torch.Generator().manual_seed(seed)
    by_class: dict[int, list[int]] = {}
    for index, target in enumerate(targets):
        by_class.setdefault(target, []).append(index)
    train, val = [], []
    for members in by_class.values():
        order = [members[i] for i in torch.randperm(len(members), generator=gen).tolist()]
        n_val = round(len(members) * val_fraction)
        if len(members) >= 2:
            n_val = min(max(n_val, 1), len(members) - 1)
        else:
            n_val = 0
        val.extend(order[:n_val])
        train.extend(order[n_val:])
    return sorted(train), sorted(val)


class ImageFolderDataModuleCore(_DataModule):
    """Images in class folders (``root/<class>/<image>``), read with ``torchvision.datasets.ImageFolder``.

    Validation images come from ``val_dir`` when it is given (with the same class folders as
    ``train_dir``), otherwise from a deterministic, per-class split of ``train_dir`` that holds back
    ``val_fraction`` of each class. Validation images are resized (shorter side to ``image_size / 0.875``),
    centre-cropped to ``image_size`` and normalised; training images get a random resized crop (scale 0.6
    to 1) and a horizontal flip when ``augment`` is true, else the validation transform. Batches are
    ``(images [B, 3, image_size, image_size], labels [B])`` tuples.

    Args:
        train_dir: folder with one sub-folder of images per class.
        val_dir: optional folder laid out the same way for validation.
        val_fraction: share of each class held back for validation when ``val_dir`` is not given, in (0, 1).
        image_size: side of the square crops fed to the model.
        batch_size: images per batch.
        num_workers: data-loading worker processes; ``None`` fits the machine (:func:`fitting_workers`: one
            per available core beyond the first, at most 4).
        mean: per-channel mean for normalisation (ImageNet's by default).
        std: per-channel standard deviation for normalisation (ImageNet's by default).
        augment: apply the random crop and flip to training images.
        seed: picks the train/validation split.

    Raises:
        ValueError: a folder is missing or holds no class folders, or the class folders of ``train_dir``
            and ``val_dir`` differ.

    """

    def __init__(
        self,
        train_dir: str,
        val_dir: str | None = None,
        val_fraction: float = 0.2,
        image_size: int = 224,
        batch_size: int = 32,
        num_workers: int | None = 0,
        mean: list[float] | None = None,
        std: list[float] | None = None,
        augment: bool = True,
        seed: int = 0,
    ) -> None:
        super().__init__()
        _check_positive(image_size=image_size, batch_size=batch_size)
        num_workers = _check_workers(num_workers)
        if not 0.0 < val_fraction < 1.0:
            raise ValueError(f"`val_fraction` must be in (0, 1), got {val_fraction}")
        mean = list(IMAGENET_MEAN if mean is None else mean)
        std = list(IMAGENET_STD if std is None else std)
        if len(mean) != 3 or len(std) != 3:
            raise ValueError(f"`mean` and `std` need 3 values each (RGB), got {len(mean)} and {len(std)}")
        if any(s <= 0 for s in std):
            raise ValueError(f"`std` values must be > 0, got {std}")
        self.save_hyperparameters()
        self.train_dir = train_dir
        self.val_dir = val_dir
        self.val_fraction = val_fraction
        self.image_size = image_size
        self.batch_size = batch_size
        self.num_workers = num_workers
        self.augment = augment
        self.seed = seed
        self.mean: tuple[float, ...] = tuple(float(m) for m in mean)
        self.std: tuple[float, ...] = tuple(float(s) for s in std)
        self.classes = self._find_classes("train_dir", train_dir)
        if val_dir is not None:
            val_classes = self._find_classes("val_dir", val_dir)
            if val_classes != self.classes:
                missing = sorted(set(self.classes) - set(val_classes))
                extra = sorted(set(val_classes) - set(self.classes))
                raise ValueError(
                    "`val_dir` must hold the same class folders as `train_dir`; "
                    f"missing: {missing}, extra: {extra}"
                )
        self.num_classes = len(self.classes)
        self.train_dataset: Dataset | None = None
        self.val_dataset: Dataset | None = None

    @staticmethod
    def _find_classes(argument: str, folder: str) -> list[str]:
        path = Path(folder)
        if not path.is_dir():
            near = difflib.get_close_matches(path.name, [p.name for p in path.parent.glob("*")], n=3)
            hint = f"; similar names beside it: {near}" if near else ""
            raise ValueError(f"`{argument}`: {folder!r} is not a folder{hint}")
        try:
            classes: list[str]
            classes, _ = datasets.folder.find_classes(str(path))
        except FileNotFoundError as err:
            raise ValueError(f"`{argument}`: {err}") from None
        return classes

    def train_transform(self) -> v2.Transform:
        """Return the transform for training images (PIL image in, normalised float tensor out)."""
        if not self.augment:
            return self.val_transform()
        return v2.Compose(
            [
                v2.ToImage(),
                v2.RandomResizedCrop(self.image_size, scale=(0.6, 1.0), antialias=True),
                v2.RandomHorizontalFlip(),
                v2.ToDtype(torch.float32, scale=True),
                v2.Normalize(list(self.mean), list(self.std)),
            ]
        )

    def val_transform(self) -> v2.Transform:
        """Return the deterministic transform for validation images."""
        return v2.Compose(
            [
                v2.ToImage(),
                v2.Resize(round(self.image_size / 0.875), antialias=True),
                v2.CenterCrop(self.image_size),
                v2.ToDtype(torch.float32, scale=True),
                v2.Normalize(list(self.mean), list(self.std)),
            ]
        )

    def setup(self, stage: str | None = None) -> None:
        """Index the image files and build both splits (idempotent)."""
        if self.train_dataset is not None:
            return
        train_base = datasets.ImageFolder(self.train_dir)
        if self.val_dir is None:
            train_idx, val_idx = _stratified_split(train_base.targets, self.val_fraction, self.seed)
            val_base = train_base
        else:
            val_base = datasets.ImageFolder(self.val_dir)
            train_idx, val_idx = list(range(len(train_base))), list(range(len(val_base)))
        self.train_dataset = _Transformed(train_base, train_idx, self.train_transform())
        self.val_dataset = _Transformed(val_base, val_idx, self.val_transform())

    def train_dataloader(self) -> DataLoader:
        """Return shuffled training batches of ``(images, labels)``."""
        self.setup()
        assert self.train_dataset is not None
        return _loader(self.train_dataset, self.batch_size, self.num_workers, shuffle=True)

    def val_dataloader(self) -> DataLoader:
        """Return validation batches of ``(images, labels)`` in a fixed order."""
        self.setup()
        assert self.val_dataset is not None
        return _loader(self.val_dataset, self.batch_size, self.num_workers, shuffle=False)


class ShapesDataModule(ShapesDataModuleCore, pl.LightningDataModule):
    """The shapes for ``pytorch_lightning``; arguments and behaviour are :class:`ShapesDataModuleCore`'s."""


class ImageFolderDataModule(ImageFolderDataModuleCore, pl.LightningDataModule):
    """A folder of images for ``pytorch_lightning``; see :class:`ImageFolderDataModuleCore`."""
