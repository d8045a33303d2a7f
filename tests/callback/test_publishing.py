"""What one validation publishes: records' tags, formats and order, and captions worked out by hand."""

from __future__ import annotations

import posixpath
import re

import pytest
import torch

from cam_callback import method_names
from cam_callback.callback.publishing import (
    SUMMARY_TILE_SIDE,
    Display,
    frame_caption,
    name_part,
    summary_records,
    validation_records,
)
from cam_callback.capture.engine import CAMResult
from cam_callback.sinks.mlflow import mlflow_key


def _result(outputs: torch.Tensor, classes: torch.Tensor | None, saliency: dict | None = None) -> CAMResult:
    raw = {("layer4", "gradcam"): torch.rand(2, 2, 2), ("layer4", "guided-gradcam"): torch.rand(2, 4, 4)}
    return CAMResult(raw, outputs, classes, torch.zeros(2), (4, 4), saliency or {})


def test_validation_records_in_order_with_their_formats():
    saliency = {("layer4", "guided-gradcam"): torch.randn(2, 3, 4, 4)}
    result = _result(torch.zeros(2, 3), torch.tensor([0, 1]), saliency)
    maps = {key: torch.rand(2, 4, 4) for key in result.raw}
    display = Display(tag_prefix="att", image_format="jpeg", log_heatmaps=True)
    records = validation_records(result, maps, torch.rand(2, 3, 4, 4), 7, display)
    assert [r.tag for r in records] == [
        "att/layer4/gradcam",
        "att_heatmap/layer4/gradcam",
        "att/layer4/guided-gradcam",
        "att_heatmap/layer4/guided-gradcam",
        "att_saliency/layer4/guided-gradcam",
    ]
    assert {r.step for r in records} == {7}
    assert [r.image_format for r in records] == ["jpeg", "png", "jpeg", "png", "jpeg"]
    # A 2-tile grid of 4x4 tiles: ceil(sqrt(2)) = 2 per row, 2 px padding around and between.
    assert all(tuple(r.image.shape) == (3, 8, 14) and r.image.dtype == torch.uint8 for r in records)
    assert display.number(("layer4", "gradcam"), "change_prev") == "att_drift/layer4/gradcam/change_prev"


def test_captions_are_asked_for_the_width_of_the_shown_tiles():
    result = _result(torch.zeros(2, 3), torch.tensor([0, 1]))
    maps = {("layer4", "gradcam"): torch.rand(2, 4, 4)}
    widths: list[int] = []

    def texts(width: int) -> list[str]:
        widths.append(width)
        return ["a", "b"]

    inputs, display = torch.rand(2, 3, 40, 40), Display(min_tile=128)
    captioned = validation_records(result, maps, inputs, 0, display, texts=texts)
    plain = validation_records(result, maps, inputs, 0, display)
    assert widths == [160]  # 40 px enlarged by the smallest whole factor reaching 128: 4
    assert not torch.equal(captioned[0].image, plain[0].image)  # the caption band is drawn


def test_no_heatmaps_when_not_asked():
    result = _result(torch.zeros(2, 3), torch.tensor([0, 1]))
    maps = {("layer4", "gradcam"): torch.rand(2, 4, 4)}
    inputs = torch.rand(2, 3, 4, 4)
    records = validation_records(result, maps, inputs, 0, Display(log_heatmaps=False))
    assert [r.tag for r in records] == ["cam/layer4/gradcam"]


@pytest.mark.parametrize("with_images", [True, False])
def test_summary_records_one_grid_per_pair(with_images: bool):
    frames = {("layer4", "gradcam"): torch.rand(3, 2, 4, 4)}  # 3 validations of 2 samples
    images = torch.rand(2, 3, 4, 4) if with_images else None
    (record,) = summary_records(frames, {("layer4", "gradcam"): [1, 2, 3]}, images, 9, Display())
    assert (record.tag, record.step, record.image_format) == ("cam_summary/layer4/gradcam", 9, "png")
    columns = 3 + with_images
    side = SUMMARY_TILE_SIDE  # 4x4 inputs and maps, drawn as 64x64 tiles
    assert tuple(record.image.shape) == (3, 2 + 2 * (side + 2), 2 + columns * (side + 2))


@pytest.mark.parametrize("size", [(224, 224), (96, 160)])
def test_summary_tiles_do_not_grow_with_the_input(size: tuple[int, int]):
    # A 224x224 input used to make 224-pixel tiles (a 13788-pixel-wide summary after 60 validations); the
    # tiles are SUMMARY_TILE_SIDE on their longer side, the aspect ratio kept.
    frames = {("layer4", "gradcam"): torch.rand(12, 3, 32, 32)}
    images = torch.rand(3, 3, *size)
    (record,) = summary_records(frames, {("layer4", "gradcam"): list(range(12))}, images, 9, Display())
    height, width = (round(side * SUMMARY_TILE_SIDE / max(size)) for side in size)
    assert tuple(record.image.shape) == (3, 2 + 3 * (height + 2), 2 + 13 * (width + 2))


def _lightning_mlflow(name: str) -> str:
    """What Lightning's ``MLFlowLogger.log_metrics`` does to a metric name: drops what MLflow refuses."""
    return re.sub("[^a-zA-Z0-9_/. -]+", "", name)


def _mlflow_accepts(name: str) -> bool:
    """MLflow's rule for metric names (letters, digits, ``_ - . / : space``; no ``..``, no leading ``/``)."""
    return re.fullmatch(r"[/\w.\- :]*", name) is not None and posixpath.normpath(name) == name


def _wandb_accepts(name: str) -> bool:
    """Keys W&B charts as written: letters, digits, ``_ - . /`` (``/`` makes a section), not ``_`` first."""
    return re.fullmatch(r"[A-Za-z0-9][\w.\-/]*", name) is not None


def _csv_accepts(name: str) -> bool:
    """A header cell CSVLogger writes without quoting: no comma, quote or line break."""
    return not set(name) & {",", '"', "\n", "\r"}


def test_every_method_is_named_so_that_every_logger_keeps_its_numbers_apart():
    display = Display()
    layer = "model.features.7"
    numbers = {
        (method, part): display.number((layer, method), part)
        for method in method_names()
        for part in ("change_prev", "energy_in_mask")
    }
    tags = {method: display.tag("_heatmap", (layer, method)) for method in method_names()}
    for name in [*numbers.values(), *tags.values()]:
        assert "+" not in name
        assert _lightning_mlflow(name) == name and mlflow_key(name) == name  # unchanged by MLflow's loggers
        assert _mlflow_accepts(name) and _wandb_accepts(name) and _csv_accepts(name)
    # TensorBoard keeps any tag as given: names must differ as written, which the loggers then keep.
    assert len(set(numbers.values())) == len(numbers)
    assert len(set(tags.values())) == len(tags)
    assert display.tag("", (layer, "gradcam++")) == "cam/model.features.7/gradcampp"
    assert name_part("gradcam++") == "gradcampp" and name_part("guided-gradcam") == "guided-gradcam"


def test_summary_columns_say_the_epoch_beside_the_step():
    frames = {("layer4", "gradcam"): torch.rand(3, 2, 4, 4)}
    steps = {("layer4", "gradcam"): [0, 5, 11]}
    epochs = {("layer4", "gradcam"): [-1, 0, 1]}
    captions = [frame_caption(s, e) for s, e in zip([0, 5, 11], [-1, 0, 1], strict=True)]
    assert captions == ["step 0", "ep 0 step 5", "ep 1 step 11"]
    with_epochs = summary_records(frames, steps, None, 12, Display(), tile_side=64, epochs=epochs)
    without = summary_records(frames, steps, None, 12, Display(), tile_side=64)
    assert with_epochs[0].tag == "cam_summary/layer4/gradcam"
    # The first column's caption is the same ("step 0"), the others differ: more ink in their bands.
    assert torch.equal(with_epochs[0].image[:, :, :66], without[0].image[:, :, :66])
    assert not torch.equal(with_epochs[0].image, without[0].image)
