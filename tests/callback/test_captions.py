"""One caption per sample for every task, worked out by hand: what the sample is, what the model saw."""

from __future__ import annotations

import math
import warnings

import torch

from cam_callback.callback.captions import captions_for, classifier_captions, task_captions
from cam_callback.callback.tasks import explained_boxes
from cam_callback.capture.engine import CAMResult
from cam_callback.targets import DetectionTarget, MultiLabelTarget


def _result(outputs, classes=None) -> CAMResult:
    return CAMResult({}, outputs, classes, torch.zeros(2), (8, 8))


def test_captions_show_label_prediction_and_the_targets_probability():
    # softmax rows: [1/4, 3/4], [4/5, 1/5]
    logits = torch.tensor([[0.0, math.log(3.0)], [math.log(4.0), 0.0]])
    assert classifier_captions(_result(logits, torch.tensor([0, 0])), torch.tensor([1, 0])) == [
        "y=1 p=1 0.25", "y=0 p=0 0.80",
    ]
    assert classifier_captions(_result(logits), None) == ["p=1 0.75", "p=0 0.80"]  # no class: the predicted
    assert classifier_captions(_result(torch.zeros(2, 3, 4)), None) is None  # not [B, classes]


def test_float_labels_are_captioned_short():
    # A regression target used to print in full precision: y=0.12345679104328156.
    captioned = classifier_captions(_result(torch.zeros(2, 1)), torch.tensor([0.12345679104328156, -1250.5]))
    assert captioned == ["y=0.123 p=0 1.00", "y=-1.25e+03 p=0 1.00"]


def test_captions_read_names_and_keep_indices_without_one():
    logits = torch.tensor([[0.0, 2.0, 0.0], [3.0, 0.0, 0.0]])
    names = ["circle", "square", "triangle"]
    texts = classifier_captions(_result(logits, logits.argmax(1)), torch.tensor([0, 5]), names)
    # softmax of (0, 2, 0): e^2 / (e^2 + 2) = 0.787; of (3, 0, 0): e^3 / (e^3 + 2) = 0.909
    assert texts == ["y=circle p=square 0.79", "y=5 p=circle 0.91"]


def test_long_names_are_shortened_to_the_tile():
    result = _result(torch.tensor([[0.0, 1.0]]), torch.tensor([1]))
    names = ["a_rather_long_class_name", "another_very_long_one"]
    wide = classifier_captions(result, torch.tensor([0]), names, width=1000)
    narrow = classifier_captions(result, torch.tensor([0]), names, width=128)
    assert wide is not None and narrow is not None
    assert wide[0].startswith("y=a_rather_long_class_name p=another_very_long_one ")
    y, p, _ = narrow[0].split(" ")
    assert y.endswith(".") and p.endswith(".") and len(y) < len("y=a_rather_long_class_name")


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


def test_detection_captions_read_scores_that_carry_gradients_without_a_warning():
    """A detector's scores carry the graph the maps came from; reading one must not warn."""
    weight = torch.tensor(2.0, requires_grad=True)
    outputs = [{"boxes": torch.tensor([[0.0, 0.0, 4.0, 4.0]]), "labels": torch.tensor([3]),
                "scores": torch.tensor([0.3]) * weight}]  # 0.6, with a grad_fn
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        texts = task_captions("detection", _result(outputs), torch.tensor([3]), DetectionTarget())
    assert texts == ["y=3 p=3 0.60"]


def test_captions_for_picks_the_tasks_own_else_the_classifiers():
    logits = torch.tensor([[0.0, math.log(3.0)], [math.log(4.0), 0.0]])
    labels = torch.tensor([1, 0])
    assert captions_for("classification", _result(logits, labels), labels, labels) == [
        "y=1 p=1 0.75", "y=0 p=0 0.80",
    ]
    regression = torch.tensor([[0.5], [2.0]])
    assert captions_for("regression", _result(regression), torch.tensor([1.0, 2.0]), None) == [
        "y=1 p=0.5", "y=2 p=2",
    ]
    assert captions_for("unlabelled", _result(torch.zeros(2, 3, 4)), None, None) is None
