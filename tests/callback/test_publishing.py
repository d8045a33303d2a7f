"""What one validation publishes: records' tags, formats and order, and captions worked out by hand."""

from __future__ import annotations

import math

import pytest
import torch

from cam_callback.callback.publishing import Display, captions, summary_records, validation_records
from cam_callback.capture.engine import CAMResult
from cam_callback.sinks import ImageRecord, ScalarRecord


def _result(outputs: torch.Tensor, classes: torch.Tensor | None, saliency: dict | None = None) -> CAMResult:
    raw = {("layer4", "gradcam"): torch.rand(2, 2, 2), ("layer4", "guided-gradcam"): torch.rand(2, 4, 4)}
    return CAMResult(raw, outputs, classes, torch.zeros(2), (4, 4), saliency or {})


def test_captions_show_label_prediction_and_the_targets_probability():
    # softmax rows: [1/4, 3/4], [4/5, 1/5]
    logits = torch.tensor([[0.0, math.log(3.0)], [math.log(4.0), 0.0]])
    result = _result(logits, torch.tensor([0, 0]))
    assert captions(result, torch.tensor([1, 0])) == ["y=1 p=1 0.25", "y=0 p=0 0.80"]
    assert captions(_result(logits, None), None) == ["p=1 0.75", "p=0 0.80"]  # no class: the predicted one's
    assert captions(_result(torch.zeros(2, 3, 4), None), None) is None  # not [B, classes]


def test_validation_records_in_order_with_their_formats():
    saliency = {("layer4", "guided-gradcam"): torch.randn(2, 3, 4, 4)}
    result = _result(torch.zeros(2, 3), torch.tensor([0, 1]), saliency)
    maps = {key: torch.rand(2, 4, 4) for key in result.raw}
    scalars = {("layer4", "gradcam"): {"change_prev": 0.5}, ("layer4", "guided-gradcam"): {}}
    display = Display(tag_prefix="att", image_format="jpeg", log_heatmaps=True)
    records = validation_records(result, maps, scalars, torch.rand(2, 3, 4, 4), None, 7, display)
    assert [(type(r).__name__, r.tag) for r in records] == [
        ("ImageRecord", "att/layer4/gradcam"),
        ("ImageRecord", "att_heatmap/layer4/gradcam"),
        ("ScalarRecord", "att_drift/layer4/gradcam/change_prev"),
        ("ImageRecord", "att/layer4/guided-gradcam"),
        ("ImageRecord", "att_heatmap/layer4/guided-gradcam"),
        ("ImageRecord", "att_saliency/layer4/guided-gradcam"),
    ]
    assert {r.step for r in records} == {7}
    images = [r for r in records if isinstance(r, ImageRecord)]
    assert [r.image_format for r in images] == ["jpeg", "png", "jpeg", "png", "jpeg"]
    # A 2-tile grid of 4x4 tiles: ceil(sqrt(2)) = 2 per row, 2 px padding around and between.
    assert all(tuple(r.image.shape) == (3, 8, 14) and r.image.dtype == torch.uint8 for r in images)
    scalar = next(r for r in records if isinstance(r, ScalarRecord))
    assert scalar.value == 0.5


def test_no_heatmaps_when_not_asked():
    result = _result(torch.zeros(2, 3), torch.tensor([0, 1]))
    maps = {("layer4", "gradcam"): torch.rand(2, 4, 4)}
    inputs = torch.rand(2, 3, 4, 4)
    records = validation_records(result, maps, {}, inputs, None, 0, Display(log_heatmaps=False))
    assert [r.tag for r in records] == ["cam/layer4/gradcam"]


@pytest.mark.parametrize("with_images", [True, False])
def test_summary_records_one_grid_per_pair(with_images: bool):
    frames = {("layer4", "gradcam"): torch.rand(3, 2, 4, 4)}  # 3 validations of 2 samples
    images = torch.rand(2, 3, 4, 4) if with_images else None
    (record,) = summary_records(frames, {("layer4", "gradcam"): [1, 2, 3]}, images, 9, Display())
    assert (record.tag, record.step, record.image_format) == ("cam_summary/layer4/gradcam", 9, "png")
    columns = 3 + with_images
    assert tuple(record.image.shape) == (3, 2 + 2 * (4 + 2), 2 + columns * (4 + 2))
