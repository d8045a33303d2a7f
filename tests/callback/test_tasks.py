"""The task read from the fixed batch, its default target and captions; detection batches; box outlines."""

from __future__ import annotations

import pytest
import torch

from cam_callback.callback.samples import DetectionBatch, FixedBatch, split_batch
from cam_callback.callback.tasks import default_target, explained_boxes, task_captions, task_of
from cam_callback.capture.engine import CAMResult
from cam_callback.render.boxes import draw_boxes
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
    assert isinstance(detect, DetectionTarget) and detect.match == "box" and detect._boxes is boxes
    empty = default_target("detection", None, DetectionBatch(X, torch.tensor([-1, -1]), torch.zeros(2, 4)))
    assert isinstance(empty, DetectionTarget) and empty.match == "best"
    # a configured object is bound to the batch when it reads it, and kept otherwise
    masks = torch.ones(2, 8, 8, dtype=torch.long)
    bound = default_target("unlabelled", SegmentationTarget(1, region="mask"), FixedBatch(X, None, masks))
    assert bound._masks is masks
    plain = SegmentationTarget(1)
    assert default_target("unlabelled", plain, FixedBatch(X, None, masks)) is plain


def _result(outputs, classes=None) -> CAMResult:
    return CAMResult({}, outputs, classes, torch.zeros(2), (8, 8))


def test_regression_captions_are_short_numbers():
    outputs = torch.tensor([[0.12345], [2.0]])
    texts = task_captions("regression", _result(outputs), torch.tensor([0.1, 1.5]), None)
    assert texts == ["y=0.1 p=0.123", "y=1.5 p=2"]


def test_multilabel_captions_use_sigmoid_probabilities():
    logits = torch.tensor([[2.0, -1.0, 0.5], [-3.0, 0.0, 1.0]])
    labels = torch.tensor([[1, 0, 1], [0, 0, 0]])
    target = MultiLabelTarget().bind(labels=labels)
    texts = task_captions("multilabel", _result(logits), labels, target)
    # sample 0: positives 0 (2.0) and 2 (0.5) -> 0, sigmoid(2) = 0.88; predicted above 0.5: 0 and 2
    # sample 1: no positive label -> its argmax 2, sigmoid(1) = 0.73; predicted above 0.5: 2 only
    assert texts == ["y=0,2 p=0,2 0:0.88", "y=- p=2 2:0.73"]


def test_detection_captions_and_the_explained_boxes():
    outputs = [
        {"boxes": torch.tensor([[0.0, 0.0, 4.0, 4.0], [2.0, 2.0, 8.0, 8.0]]), "labels": torch.tensor([1, 2]),
         "scores": torch.tensor([0.9, 0.4])},
        {"boxes": torch.zeros(0, 4), "labels": torch.zeros(0, dtype=torch.long), "scores": torch.zeros(0)},
    ]
    target = DetectionTarget(class_index=2)
    texts = task_captions("detection", _result(outputs), torch.tensor([2, -1]), target)
    assert texts == ["y=2 p=2 0.40", "no box"]
    expected = torch.tensor([[2.0, 2.0, 8.0, 8.0], [0.0] * 4])
    torch.testing.assert_close(explained_boxes(outputs, target), expected)
    assert task_captions("classification", _result(torch.zeros(2, 3)), None, None) is None


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


def test_draw_boxes_outlines_inside_the_box():
    tiles = torch.zeros(2, 3, 6, 6, dtype=torch.uint8)
    boxes = torch.tensor([[1.0, 1.0, 5.0, 4.0], [0.0, 0.0, 0.0, 0.0]])
    out = draw_boxes(tiles, boxes, color=(10, 20, 30), thickness=1)
    painted = (out[0, 0] == 10).int()
    expected = torch.zeros(6, 6, dtype=torch.int)
    expected[1, 1:5] = expected[3, 1:5] = 1  # top and bottom rows (y2 = 4 exclusive)
    expected[1:4, 1] = expected[1:4, 4] = 1  # left and right columns (x2 = 5 exclusive)
    assert torch.equal(painted, expected)
    assert out[0, 1][painted.bool()].unique().tolist() == [20]
    assert out[1].sum() == 0  # an empty box draws nothing
    assert tiles.sum() == 0  # the input is not changed


def test_a_detection_batch_survives_a_resume():
    from cam_callback import GradCAMCallback

    boxes = torch.tensor([[0.0, 0.0, 4.0, 4.0], [1.0, 1.0, 5.0, 5.0]])
    callback = GradCAMCallback(layer="x")
    callback._batch = DetectionBatch(X, torch.tensor([1, 2]), boxes)
    resumed = GradCAMCallback(layer="x")
    resumed.load_state_dict(callback.state_dict())
    assert isinstance(resumed._batch, DetectionBatch) and task_of(resumed._batch) == "detection"
    torch.testing.assert_close(resumed._batch.masks, boxes)


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
