"""The task read from the fixed batch, its default target and captions; detection batches; box outlines."""

from __future__ import annotations

import pytest
import torch

from cam_callback import CAMConfigurationError
from cam_callback.callback.samples import DetectionBatch, FixedBatch, split_batch
from cam_callback.callback.tasks import check_labels, default_target, task_of
from cam_callback.targets import DetectionTarget, MultiLabelTarget, RegressionTarget, SegmentationTarget

X = torch.zeros(2, 3, 8, 8)


@pytest.mark.parametrize(
    ("labels", "task"),
    [
        (None, "unlabelled"),
        (torch.tensor([0, 3]), "classification"),
        (torch.tensor([0.5, 1.25]), "regression"),
        (torch.tensor([[0.5], [1.25]]), "regression"),
        (torch.tensor([[1, 0, 1], [0, 0, 1]]), "multilabel"),
        (torch.tensor([[1.0, 0.0, 1.0], [0.0, 0.0, 1.0]]), "multilabel"),
        (torch.tensor([[0.2, 3.0], [1.0, 0.5]]), "regression"),
    ],
)
def test_task_of_reads_the_labels(labels, task):
    assert task_of(FixedBatch(X, labels)) == task


def test_task_of_a_detection_batch():
    assert task_of(DetectionBatch(X, torch.tensor([1, 2]), torch.zeros(2, 4))) == "detection"


def test_default_targets_per_task():
    labels = torch.tensor([[1, 0, 1], [0, 1, 0]])
    floats = FixedBatch(X, torch.tensor([0.1, 0.2]))
    assert isinstance(default_target("regression", None, floats), RegressionTarget)
    assert isinstance(default_target("regression", "label", floats), RegressionTarget)
    multi = default_target("multilabel", None, FixedBatch(X, labels))
    assert isinstance(multi, MultiLabelTarget)
    assert multi.classes(torch.tensor([[0.0, 9.0, 1.0], [5.0, 2.0, 0.0]])).tolist() == [2, 1]
    assert default_target("multilabel", "predicted", FixedBatch(X, labels)) == "predicted"
    classes = torch.tensor([2, 0])
    assert default_target("classification", None, FixedBatch(X, classes)) is classes
    assert default_target("classification", 3, FixedBatch(X, classes)) == 3
    assert default_target("unlabelled", None, FixedBatch(X)) == "predicted"
    boxes = torch.tensor([[0.0, 0.0, 4.0, 4.0], [1.0, 1.0, 5.0, 5.0]])
    detect = default_target("detection", None, DetectionBatch(X, torch.tensor([1, 2]), boxes))
    assert isinstance(detect, DetectionTarget) and detect.match == "box"
    # Bound to the ground truth: each sample's box that overlaps its own, not the best-scoring one.
    detections = [
        {"boxes": torch.tensor([[0.0, 0.0, 4.0, 4.0], [5.0, 5.0, 8.0, 8.0]]), "labels": torch.tensor([1, 1]),
         "scores": torch.tensor([0.2, 0.9])},
        {"boxes": torch.tensor([[1.0, 1.0, 5.0, 5.0], [6.0, 6.0, 8.0, 8.0]]), "labels": torch.tensor([2, 2]),
         "scores": torch.tensor([0.1, 0.95])},
    ]
    assert detect.chosen(detections) == [0, 0] and DetectionTarget().chosen(detections) == [1, 1]
    empty = default_target("detection", None, DetectionBatch(X, torch.tensor([-1, -1]), torch.zeros(2, 4)))
    assert isinstance(empty, DetectionTarget) and empty.match == "best"
    # a configured object is bound to the batch when it reads it, and kept otherwise
    masks = torch.zeros(2, 8, 8, dtype=torch.long)
    masks[:, :4] = 1  # class 1 in the top half
    bound = default_target("unlabelled", SegmentationTarget(1, region="mask"), FixedBatch(X, None, masks))
    logits = torch.randn(2, 3, 8, 8, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(bound(logits), logits[:, 1, :4].sum(dim=(1, 2)))
    plain = SegmentationTarget(1)
    assert default_target("unlabelled", plain, FixedBatch(X, None, masks)) is plain


def test_a_detection_batch_is_read_from_tuples_of_lists():
    images = (torch.rand(3, 8, 8), torch.rand(3, 8, 8), torch.rand(3, 8, 8))
    targets = (
        {"boxes": torch.tensor([[1.0, 2.0, 5.0, 6.0], [0.0, 0.0, 2.0, 2.0]]), "labels": torch.tensor([3, 1])},
        {"boxes": torch.zeros(0, 4), "labels": torch.zeros(0, dtype=torch.long)},
        {"boxes": torch.tensor([[2.0, 2.0, 4.0, 4.0]]), "labels": torch.tensor([2])},
    )
    batch = split_batch((images, targets))
    assert isinstance(batch, DetectionBatch)
    torch.testing.assert_close(batch.inputs, torch.stack(images))
    assert batch.labels is not None and batch.masks is not None
    assert batch.labels.tolist() == [3, -1, 2]  # each sample's first object; -1: none
    assert batch.masks.tolist() == [[1.0, 2.0, 5.0, 6.0], [0.0] * 4, [2.0, 2.0, 4.0, 4.0]]
    with pytest.raises(ValueError, match=r"detection images of different sizes"):
        split_batch(((torch.rand(3, 8, 8), torch.rand(3, 6, 8)), targets[:2]))


def test_multi_hot_and_column_labels_are_kept():
    labels = torch.tensor([[1, 0, 1], [0, 1, 0]])
    assert split_batch((X, labels)).labels is labels
    column = torch.tensor([[0.5], [2.0]])
    assert split_batch({"image": X, "label": column}).labels is column


def test_a_segmentation_output_without_a_target_names_the_target_objects():
    from cam_callback import compute_cam

    model = torch.nn.Sequential(torch.nn.Conv2d(3, 2, 1))
    with pytest.raises(ValueError, match=r"\(2, 2, 8, 8\), not \[B, classes\] logits.*SegmentationTarget"):
        compute_cam(model, X, "0")


def test_detection_batches_from_an_iterable_dataset_are_joined():
    from torch.utils.data import DataLoader, IterableDataset

    from cam_callback.callback.samples import take_fixed_batch
    from cam_callback.demo import detection_collate

    class Stream(IterableDataset):
        def __iter__(self):
            for i in range(5):
                box = torch.tensor([[float(i), 0.0, i + 2.0, 2.0]])
                yield torch.full((3, 4, 4), float(i)), {"boxes": box, "labels": torch.tensor([i])}

    batch = take_fixed_batch(DataLoader(Stream(), batch_size=2, collate_fn=detection_collate), 3)
    assert isinstance(batch, DetectionBatch) and batch.labels is not None and batch.masks is not None
    assert batch.inputs[:, 0, 0, 0].tolist() == [0.0, 1.0, 2.0] and batch.labels.tolist() == [0, 1, 2]
    assert batch.masks[:, 0].tolist() == [0.0, 1.0, 2.0]


def test_labels_that_the_target_cannot_use_stop_the_run():
    check_labels("label", torch.tensor([0, 2]))
    check_labels(None, torch.tensor([0.5, 1.0]))  # float labels by default: a task of its own
    check_labels("predicted", None)
    with pytest.raises(CAMConfigurationError, match="`target='label'` but the batches carry no labels"):
        check_labels("label", None)
    with pytest.raises(CAMConfigurationError, match="the labels are float32 numbers, not class indices"):
        check_labels("label", torch.tensor([0.5, 1.0]))
