import pickle
import random
from typing import cast

import cv2
import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from cam_callback.demo.shapes import SHAPE_NAMES, ShapesDataset


def _denormalize(image: torch.Tensor) -> torch.Tensor:
    mean = torch.tensor(ShapesDataset.MEAN).view(3, 1, 1)
    std = torch.tensor(ShapesDataset.STD).view(3, 1, 1)
    return image * std + mean


def _marker_patch(ds: ShapesDataset, image: torch.Tensor) -> torch.Tensor:
    top, left, bottom, right = ds.marker_box
    return _denormalize(image)[:, top:bottom, left:right]


def _matches_marker(ds: ShapesDataset, image: torch.Tensor, label: int) -> bool:
    colour = torch.tensor(ds.marker_color(label)).view(3, 1, 1)
    return bool(torch.allclose(_marker_patch(ds, image), colour, atol=1e-5))


def test_same_seed_and_index_give_identical_samples():
    a, b = ShapesDataset(20, seed=3), ShapesDataset(20, seed=3)
    for index in (0, 7, 19):
        for key in ("image", "label", "mask"):
            assert torch.equal(a[index][key], b[index][key])


def test_samples_do_not_depend_on_reading_order():
    ds = ShapesDataset(10, seed=1)
    forward = [ds[i]["image"] for i in range(10)]
    backward = [ds[i]["image"] for i in reversed(range(10))][::-1]
    assert all(torch.equal(f, b) for f, b in zip(forward, backward, strict=True))
    assert torch.equal(ds[-1]["image"], ds[9]["image"])


def test_different_seeds_and_indices_differ():
    a, b = ShapesDataset(8, seed=0), ShapesDataset(8, seed=1)
    assert not torch.equal(a[0]["image"], b[0]["image"])
    assert not torch.equal(a[0]["image"], a[4]["image"])  # same class, different draw


def test_reading_samples_leaves_global_rng_untouched():
    torch.manual_seed(123)
    np.random.seed(123)
    random.seed(123)
    torch_state, np_state, py_state = torch.get_rng_state(), np.random.get_state(), random.getstate()
    ds = ShapesDataset(16, shortcut=True)
    for i in range(len(ds)):
        ds[i]
    assert torch.equal(torch.get_rng_state(), torch_state)
    assert np.array_equal(cast(tuple, np.random.get_state())[1], cast(tuple, np_state)[1])
    assert random.getstate() == py_state


@pytest.mark.parametrize("image_size", [32, 64])
def test_sample_structure_dtypes_and_ranges(image_size):
    ds = ShapesDataset(5, image_size=image_size, num_classes=5)
    assert len(ds) == 5
    sample = ds[3]
    assert set(sample) == {"image", "label", "mask"}
    assert sample["image"].shape == (3, image_size, image_size)
    assert sample["image"].dtype == torch.float32
    assert sample["label"].shape == () and sample["label"].dtype == torch.int64
    assert sample["mask"].shape == (image_size, image_size) and sample["mask"].dtype == torch.bool
    raw = _denormalize(sample["image"])
    assert raw.min() >= -1e-5 and raw.max() <= 1 + 1e-5
    image, label, mask = ds.render(3)
    assert image.shape == (image_size, image_size, 3) and image.dtype == np.float32
    assert label == int(sample["label"])
    assert np.array_equal(mask, sample["mask"].numpy())


def test_normalisation_statistics_are_close_to_the_data():
    ds = ShapesDataset(200, seed=5)
    images = torch.stack([ds[i]["image"] for i in range(len(ds))])
    assert images.mean((0, 2, 3)).abs().max() < 0.2
    assert (images.std((0, 2, 3)) - 1).abs().max() < 0.1


def test_labels_cycle_through_classes_and_are_balanced():
    ds = ShapesDataset(50, num_classes=5)
    labels = torch.stack([ds[i]["label"] for i in range(len(ds))])
    assert labels[:5].tolist() == [0, 1, 2, 3, 4]
    assert torch.bincount(labels, minlength=5).tolist() == [10] * 5
    assert ds.classes == list(SHAPE_NAMES[:5])


def test_mask_covers_the_drawn_object():
    size = 64
    ds = ShapesDataset(40, image_size=size, num_classes=len(SHAPE_NAMES), seed=2)
    kernel = np.ones((3, 3), np.uint8)
    contrasts = []
    for index in range(len(ds)):
        image, _, mask = ds.render(index)
        area = int(mask.sum())
        assert 0.01 * size * size < area < 0.5 * size * size
        inner = cv2.erode(mask.astype(np.uint8), kernel).astype(bool)
        outer = ~cv2.dilate(mask.astype(np.uint8), kernel, iterations=2).astype(bool)
        # The object is painted in one colour (plus pixel noise): its interior is flat...
        assert image[inner].std(axis=0).max() < 0.06
        # ...and it stands apart from the background around it.
        contrasts.append(np.linalg.norm(image[inner].mean(axis=0) - image[outer].mean(axis=0)))
    assert np.median(contrasts) > 0.3
    assert min(contrasts) > 0.1


def test_every_shape_class_renders():
    ds = ShapesDataset(len(SHAPE_NAMES), num_classes=len(SHAPE_NAMES))
    areas = [int(ds[i]["mask"].sum()) for i in range(len(ds))]
    assert all(a > 0 for a in areas)


def test_ring_has_a_hole():
    ds = ShapesDataset(5, num_classes=5)  # index 4 is a ring
    _, label, mask = ds.render(4)
    assert SHAPE_NAMES[label] == "ring"
    ys, xs = np.nonzero(mask)
    cy, cx = round(ys.mean()), round(xs.mean())
    assert not mask[cy, cx]


def test_shortcut_marker_encodes_the_label():
    ds = ShapesDataset(12, num_classes=4, shortcut=True)
    for index in range(len(ds)):
        sample = ds[index]
        label = int(sample["label"])
        assert _matches_marker(ds, sample["image"], label)
        assert not any(_matches_marker(ds, sample["image"], other) for other in range(4) if other != label)
        top, left, bottom, right = ds.marker_box
        assert not sample["mask"][top:bottom, left:right].any()
    colours = {ds.marker_color(k) for k in range(4)}
    assert len(colours) == 4


def test_no_marker_without_shortcut():
    plain = ShapesDataset(12, num_classes=4, shortcut=False)
    marked = ShapesDataset(12, num_classes=4, shortcut=True)
    for index in range(len(plain)):
        image = plain[index]["image"]
        assert not any(_matches_marker(plain, image, k) for k in range(4))
        assert _marker_patch(plain, image).std() > 0.005  # noisy texture, not a flat patch
        # Outside the marker the two datasets draw the same picture.
        top, left, bottom, right = plain.marker_box
        same = torch.ones(64, 64, dtype=torch.bool)
        same[top:bottom, left:right] = False
        assert torch.equal(image[:, same], marked[index]["image"][:, same])


def test_marker_size_and_box():
    ds = ShapesDataset(2, image_size=64, shortcut=True, marker_size=8)
    assert ds.marker_box == (0, 0, 8, 8)
    assert ShapesDataset(2, image_size=64).marker_size == 6
    with pytest.raises(ValueError, match="`label`"):
        ds.marker_color(4)


def test_default_collate_batches_samples():
    ds = ShapesDataset(8, image_size=32)
    batch = next(iter(DataLoader(ds, batch_size=4)))
    assert batch["image"].shape == (4, 3, 32, 32)
    assert batch["label"].tolist() == [0, 1, 2, 3]
    assert batch["mask"].shape == (4, 32, 32) and batch["mask"].dtype == torch.bool


def test_dataset_pickles_for_worker_processes():
    ds = ShapesDataset(4, seed=9, shortcut=True)
    copy = pickle.loads(pickle.dumps(ds))
    assert torch.equal(copy[2]["image"], ds[2]["image"])


def test_index_out_of_range():
    ds = ShapesDataset(3)
    with pytest.raises(IndexError):
        ds[3]


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"num_classes": 1}, "`num_classes`"),
        ({"num_classes": len(SHAPE_NAMES) + 1}, "`num_classes`"),
        ({"image_size": 8}, "`image_size`"),
        ({"length": -1}, "`length`"),
        ({"marker_size": 40}, "`marker_size`"),
    ],
)
def test_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        ShapesDataset(**kwargs)


def test_wrong_argument_type():
    with pytest.raises(TypeError, match="`image_size`"):
        ShapesDataset(image_size=64.0)  # type: ignore[arg-type]
