"""The shapes recast for other tasks: the same pictures, labelled as each task's module docstring says."""

from __future__ import annotations

from typing import Any

import pytest
import torch

from cam_callback.demo import ShapesDataset, ShapesTaskDataModule, ShapesTaskDataset, detection_collate
from cam_callback.demo.task_data import TASKS

SIZE, COUNT, CLASSES, SEED = 32, 6, 3, 1


@pytest.fixture(scope="module")
def shapes() -> ShapesDataset:
    """The classification samples the task datasets recast (same seeds, same pictures)."""
    return ShapesDataset(COUNT, image_size=SIZE, num_classes=CLASSES, seed=SEED)


def task(name: str) -> ShapesTaskDataset:
    return ShapesTaskDataset(name, COUNT, SIZE, CLASSES, seed=SEED)


def test_the_four_tasks():
    assert TASKS == ("segmentation", "detection", "multilabel", "regression")
    with pytest.raises(ValueError, match=r"`task`: unknown 'pose'"):
        ShapesTaskDataset("pose")


def test_segmentation_masks_hold_the_class_plus_one_on_the_object(shapes):
    data = task("segmentation")
    assert len(data) == COUNT
    for index in range(COUNT):
        sample, plain = data[index], shapes[index]
        assert set(sample) == {"image", "mask"}
        assert torch.equal(sample["image"], plain["image"])
        mask = sample["mask"]
        assert mask.dtype == torch.int64 and mask.shape == (SIZE, SIZE)
        label = int(plain["label"])
        assert torch.equal(mask == label + 1, plain["mask"])  # 1 + shape class on the object
        assert torch.equal(mask == 0, ~plain["mask"])  # 0 elsewhere
        assert set(mask.unique().tolist()) == {0, label + 1}


def test_detection_targets_are_the_objects_bounding_box(shapes):
    data = task("detection")
    for index in range(COUNT):
        image, target = data[index]
        plain = shapes[index]
        assert torch.equal(image, plain["image"]) and set(target) == {"boxes", "labels"}
        rows = [y for y in range(SIZE) if bool(plain["mask"][y].any())]
        columns = [x for x in range(SIZE) if bool(plain["mask"][:, x].any())]
        expected = [[float(min(columns)), float(min(rows)), float(max(columns) + 1), float(max(rows) + 1)]]
        assert target["boxes"].dtype == torch.float32 and target["boxes"].tolist() == expected
        assert target["labels"].tolist() == [int(plain["label"]) + 1]


def test_detection_batches_are_tuples_of_images_and_of_targets():
    data = task("detection")
    images, targets = detection_collate([data[0], data[1], data[2]])
    assert isinstance(images, tuple) and isinstance(targets, tuple) and len(images) == len(targets) == 3
    assert torch.equal(images[1], data[1][0])
    assert torch.equal(targets[2]["boxes"], data[2][1]["boxes"]) and targets[2]["labels"].shape == (1,)


def test_multilabel_pictures_put_two_shapes_side_by_side(shapes):
    data = task("multilabel")
    counts = []
    for index in range(COUNT):
        sample, plain = data[index], shapes[index]
        assert set(sample) == {"image", "label", "mask"}
        assert sample["image"].shape == (3, SIZE, 2 * SIZE) and sample["mask"].shape == (SIZE, 2 * SIZE)
        assert torch.equal(sample["image"][:, :, :SIZE], plain["image"])  # the first shape on the left
        assert torch.equal(sample["mask"][:, :SIZE], plain["mask"])
        assert sample["mask"][:, SIZE:].any()  # a second object on the right
        label = sample["label"]
        assert label.dtype == torch.float32 and label.shape == (CLASSES,)
        assert set(label.tolist()) <= {0.0, 1.0} and label[int(plain["label"])] == 1.0
        counts.append(int(label.sum()))
    assert set(counts) <= {1, 2} and 2 in counts  # two classes where the shapes differ


def test_regression_labels_are_the_share_of_the_image_the_object_covers(shapes):
    data = task("regression")
    for index in range(COUNT):
        sample, plain = data[index], shapes[index]
        assert torch.equal(sample["image"], plain["image"]) and torch.equal(sample["mask"], plain["mask"])
        covered = sum(int(value) for value in plain["mask"].flatten().tolist())
        assert sample["label"].dtype == torch.float32 and sample["label"].shape == ()
        assert float(sample["label"]) == pytest.approx(covered / (SIZE * SIZE))
        assert 0.0 < float(sample["label"]) < 1.0


@pytest.mark.parametrize("name", TASKS)
def test_the_data_module_builds_both_splits_and_batches_them(name):
    data = ShapesTaskDataModule(
        name, num_train=4, num_val=3, image_size=SIZE, num_shapes=CLASSES, batch_size=2
    )
    assert data.task == name and (data.mean, data.std) == (ShapesDataset.MEAN, ShapesDataset.STD)
    with pytest.raises(RuntimeError, match=r"call setup\(\) first"):
        data.val_dataloader()
    data.setup("fit")
    batches: list[Any] = list(data.val_dataloader())
    assert len(batches) == 2  # 3 samples, 2 per batch
    # the splits' seeds: 2 * seed (train) and 2 * seed + 1 (val), with the default seed 0
    val = ShapesTaskDataset(name, 3, SIZE, CLASSES, seed=1)
    train = ShapesTaskDataset(name, 4, SIZE, CLASSES, seed=0)
    assert data.val_dataset is not None and data.train_dataset is not None
    assert len(data.val_dataset) == 3 and len(data.train_dataset) == 4
    if name == "detection":
        images, targets = batches[0]
        assert len(images) == 2 and images[0].shape == (3, SIZE, SIZE)
        assert torch.equal(images[0], val[0][0]) and torch.equal(targets[1]["boxes"], val[1][1]["boxes"])
        assert torch.equal(data.train_dataset[3][0], train[3][0])
    else:
        width = 2 * SIZE if name == "multilabel" else SIZE
        assert batches[0]["image"].shape == (2, 3, SIZE, width)
        assert torch.equal(batches[0]["image"][1], val[1]["image"])
        assert torch.equal(data.train_dataset[3]["image"], train[3]["image"])


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"task": "pose"}, ValueError, r"`task`: unknown 'pose'"),
        ({"num_shapes": 1}, ValueError, r"`num_shapes` must be at least 2, got 1"),
        ({"image_size": 8}, ValueError, r"`image_size` must be at least 16, got 8"),
        ({"num_val": 0}, ValueError, r"`num_val` must be at least 1, got 0"),
        ({"batch_size": 2.0}, TypeError, r"`batch_size` must be an int"),
    ],
)
def test_the_data_module_refuses_bad_arguments(kwargs, error, message):
    with pytest.raises(error, match=message):
        ShapesTaskDataModule(**kwargs)
