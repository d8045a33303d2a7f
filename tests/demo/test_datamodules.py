import os
from pathlib import Path
from typing import cast

import cv2
import numpy as np
import pytest
import torch
from jsonargparse import ArgumentParser
from lightning_fabric.utilities.data import AttributeDict

from cam_callback.demo import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    ImageFolderDataModule,
    ShapesDataModule,
    ShapesDataset,
)
from cam_callback.demo.datamodules import fitting_workers


def _indices(dataset: object) -> list[int]:
    """The image folder's samples a split holds (its public ``indices``)."""
    indices = getattr(dataset, "indices", None)
    assert isinstance(indices, list) and all(isinstance(i, int) for i in indices)
    return indices


def _instantiate(parser: ArgumentParser, cfg):
    # `instantiate` replaced `instantiate_classes` in jsonargparse 4.49.
    return getattr(parser, "instantiate", parser.instantiate_classes)(cfg)


def _marker_in(ds: ShapesDataset, image: torch.Tensor) -> bool:
    mean = torch.tensor(ShapesDataset.MEAN).view(3, 1, 1)
    std = torch.tensor(ShapesDataset.STD).view(3, 1, 1)
    top, left, bottom, right = ds.marker_box
    patch = (image * std + mean)[:, top:bottom, left:right]
    colours = [torch.tensor(ds.marker_color(k)).view(3, 1, 1) for k in range(ds.num_classes)]
    return any(torch.allclose(patch, c, atol=1e-5) for c in colours)


# ---------------------------------------------------------------- shapes


def test_shapes_datamodule_attributes_before_setup():
    dm = ShapesDataModule(num_train=8, num_val=4, num_classes=5)
    assert dm.num_classes == 5
    assert dm.mean == ShapesDataset.MEAN and dm.std == ShapesDataset.STD
    assert dm.classes == ["circle", "square", "triangle", "cross", "ring"]
    assert cast(AttributeDict, dm.hparams).num_classes == 5


def test_shapes_datamodule_batches():
    dm = ShapesDataModule(num_train=10, num_val=6, image_size=32, num_classes=3, batch_size=4)
    dm.setup("fit")
    train = next(iter(dm.train_dataloader()))
    assert set(train) == {"image", "label", "mask"}
    assert train["image"].shape == (4, 3, 32, 32) and train["image"].dtype == torch.float32
    assert train["label"].shape == (4,) and train["label"].dtype == torch.int64
    assert train["mask"].shape == (4, 32, 32) and train["mask"].dtype == torch.bool
    val_batches = list(dm.val_dataloader())
    assert [len(b["label"]) for b in val_batches] == [4, 2]
    assert val_batches[0]["label"].tolist() == [0, 1, 2, 0]  # fixed order


def test_shapes_datamodule_splits_are_disjoint_and_reproducible():
    a, b = ShapesDataModule(num_train=4, num_val=4, seed=1), ShapesDataModule(num_train=4, num_val=4, seed=1)
    assert torch.equal(a.val_dataset[0]["image"], b.val_dataset[0]["image"])
    assert not torch.equal(a.train_dataset[0]["image"], a.val_dataset[0]["image"])
    other = ShapesDataModule(num_train=4, num_val=4, seed=2)
    assert not torch.equal(a.val_dataset[0]["image"], other.val_dataset[0]["image"])
    # Seeds never collide across data modules: train of seed s+... is not val of seed s.
    assert not torch.equal(other.train_dataset[0]["image"], a.val_dataset[0]["image"])


def test_shortcut_marks_training_images_only():
    dm = ShapesDataModule(num_train=8, num_val=8, batch_size=8, shortcut=True)
    dm.setup("fit")
    train = next(iter(dm.train_dataloader()))
    val = next(iter(dm.val_dataloader()))
    assert dm.train_dataset.shortcut and not dm.val_dataset.shortcut
    assert all(_marker_in(dm.train_dataset, image) for image in train["image"])
    assert not any(_marker_in(dm.val_dataset, image) for image in val["image"])


@pytest.mark.parametrize(
    ("kwargs", "match"), [({"batch_size": 0}, "`batch_size`"), ({"num_workers": -1}, "`num_workers`")]
)
def test_shapes_datamodule_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        ShapesDataModule(**kwargs)


def test_shapes_datamodule_builds_from_parsed_arguments():
    parser = ArgumentParser()
    parser.add_class_arguments(ShapesDataModule, "data")
    cfg = parser.parse_args(["--data.num_train=6", "--data.shortcut=true", "--data.image_size=32"])
    dm = _instantiate(parser, cfg).data
    assert isinstance(dm, ShapesDataModule)
    assert len(dm.train_dataset) == 6 and dm.train_dataset.shortcut and dm.train_dataset.image_size == 32


# ---------------------------------------------------------------- image folders


def _write_folder(root: Path, classes: list[str], per_class: int, seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    for k, name in enumerate(classes):
        (root / name).mkdir(parents=True)
        for i in range(per_class):
            image = rng.integers(0, 256, size=(20, 24, 3), dtype=np.uint8)
            image[..., k % 3] = 255  # a class tint
            assert cv2.imwrite(str(root / name / f"{i}.png"), image)
    return root


@pytest.fixture
def image_root(tmp_path):
    return _write_folder(tmp_path / "train", ["cat", "dog", "owl"], per_class=5)


def test_imagefolder_attributes_before_setup(image_root):
    dm = ImageFolderDataModule(str(image_root), image_size=16)
    assert dm.num_classes == 3 and dm.classes == ["cat", "dog", "owl"]
    assert dm.mean == IMAGENET_MEAN and dm.std == IMAGENET_STD
    assert dm.train_dataset is None


def test_imagefolder_split_and_batches(image_root):
    dm = ImageFolderDataModule(str(image_root), image_size=16, batch_size=4, val_fraction=0.2)
    dm.setup("fit")
    train, val = _indices(dm.train_dataset), _indices(dm.val_dataset)
    assert len(train) == 12 and len(val) == 3
    assert set(train).isdisjoint(val) and set(train) | set(val) == set(range(15))
    images, labels = next(iter(dm.train_dataloader()))
    assert images.shape == (4, 3, 16, 16) and images.dtype == torch.float32
    assert labels.dtype == torch.int64
    val_images, val_labels = next(iter(dm.val_dataloader()))
    assert sorted(val_labels.tolist()) == [0, 1, 2]  # one held back from each class
    again, _ = next(iter(dm.val_dataloader()))
    assert torch.equal(val_images, again)  # deterministic transform


def test_imagefolder_split_is_reproducible(image_root):
    a = ImageFolderDataModule(str(image_root), seed=4)
    b = ImageFolderDataModule(str(image_root), seed=4)
    c = ImageFolderDataModule(str(image_root), seed=5)
    for dm in (a, b, c):
        dm.setup()
    assert _indices(a.val_dataset) == _indices(b.val_dataset)
    assert _indices(a.val_dataset) != _indices(c.val_dataset)


def test_imagefolder_normalises_with_its_mean_and_std(tmp_path):
    root = tmp_path / "flat"
    for name in ("a", "b"):
        (root / name).mkdir(parents=True)
        cv2.imwrite(str(root / name / "0.png"), np.full((8, 8, 3), 255, np.uint8))
        cv2.imwrite(str(root / name / "1.png"), np.full((8, 8, 3), 255, np.uint8))
    dm = ImageFolderDataModule(str(root), image_size=8, mean=[0.5, 0.25, 0.0], std=[0.5, 0.25, 2.0])
    dm.setup()
    assert dm.val_dataset is not None
    image, _ = dm.val_dataset[0]
    assert torch.allclose(image[:, 4, 4], torch.tensor([1.0, 3.0, 0.5]), atol=1e-4)


def test_imagefolder_with_val_dir(tmp_path, image_root):
    val_root = _write_folder(tmp_path / "val", ["cat", "dog", "owl"], per_class=2, seed=1)
    dm = ImageFolderDataModule(str(image_root), val_dir=str(val_root), image_size=16, augment=False)
    dm.setup()
    assert len(_indices(dm.train_dataset)) == 15 and len(_indices(dm.val_dataset)) == 6
    assert dm.train_dataset is not None
    first, _ = dm.train_dataset[0]
    assert torch.equal(first, dm.train_dataset[0][0])  # no augmentation


def test_imagefolder_val_dir_with_other_classes(tmp_path, image_root):
    val_root = _write_folder(tmp_path / "val", ["cat", "dog", "eel"], per_class=1)
    with pytest.raises(ValueError, match=r"`val_dir`.*missing: \['owl'\], extra: \['eel'\]"):
        ImageFolderDataModule(str(image_root), val_dir=str(val_root))


def test_imagefolder_missing_folder(tmp_path):
    with pytest.raises(ValueError, match="`train_dir`.*not a folder"):
        ImageFolderDataModule(str(tmp_path / "nowhere"))


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"val_fraction": 1.0}, "`val_fraction`"),
        ({"mean": [0.5]}, "`mean`"),
        ({"std": [1.0, 0.0, 1.0]}, "`std`"),
    ],
)
def test_imagefolder_bad_arguments(image_root, kwargs, match):
    with pytest.raises(ValueError, match=match):
        ImageFolderDataModule(str(image_root), **kwargs)


def test_imagefolder_builds_from_parsed_arguments(image_root):
    parser = ArgumentParser()
    parser.add_class_arguments(ImageFolderDataModule, "data")
    cfg = parser.parse_args(
        [f"--data.train_dir={image_root}", "--data.image_size=16", "--data.mean=[0.1,0.2,0.3]"]
    )
    dm = _instantiate(parser, cfg).data
    assert dm.num_classes == 3 and dm.mean == (0.1, 0.2, 0.3)


# ---------------------------------------------------------------- loader workers


@pytest.mark.parametrize(("cores", "expected"), [(1, 0), (2, 1), (3, 2), (5, 4), (16, 4)])
def test_fitting_workers_leave_one_core_free_and_stop_at_four(monkeypatch, cores, expected):
    monkeypatch.setattr(os, "sched_getaffinity", lambda _pid: set(range(cores)))
    assert fitting_workers() == expected


@pytest.mark.parametrize(("cores", "expected"), [(None, 0), (1, 0), (3, 2), (8, 4)])
def test_without_an_affinity_call_the_core_count_is_used(monkeypatch, cores, expected):
    monkeypatch.delattr(os, "sched_getaffinity", raising=False)
    monkeypatch.setattr(os, "cpu_count", lambda: cores)  # None: unknown, taken as one core
    assert fitting_workers() == expected


@pytest.mark.parametrize(("cores", "expected"), [(1, 0), (3, 2), (12, 4)])
def test_none_fits_the_workers_to_the_machine(image_root, monkeypatch, cores, expected):
    monkeypatch.setattr(os, "sched_getaffinity", lambda _pid: set(range(cores)))
    assert ImageFolderDataModule(str(image_root), num_workers=None).num_workers == expected
    assert ImageFolderDataModule(str(image_root), num_workers=3).num_workers == 3  # a number is kept
    assert ImageFolderDataModule(str(image_root)).num_workers == 0  # the default


def test_negative_or_non_integer_workers_are_refused(image_root):
    message = r"`num_workers` must be >= 0 \(or None to fit the machine\), got -1"
    with pytest.raises(ValueError, match=message):
        ImageFolderDataModule(str(image_root), num_workers=-1)
    with pytest.raises(TypeError, match="`num_workers` must be an int or None, got float"):
        ImageFolderDataModule(str(image_root), num_workers=2.0)  # type: ignore[arg-type]
