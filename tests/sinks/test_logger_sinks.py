"""The W&B and MLflow sinks hand the loggers' own APIs what they take (fakes record the calls)."""

from __future__ import annotations

from typing import Any

import pytest
import torch

from cam_callback.callback.loggers import ImagesOnly
from cam_callback.sinks import MlflowSink, PngSink, WandbSink, publish
from cam_callback.sinks.base import ImageRecord, ScalarRecord
from cam_callback.sinks.mlflow import mlflow_key


class Calls:
    def __init__(self, *names):
        self.calls: list[tuple[Any, ...]] = []
        for name in names:
            setattr(self, name, lambda *a, _name=name, **k: self.calls.append((_name, a, k)))


def _image():
    image = torch.zeros(3, 2, 4, dtype=torch.uint8)
    image[0, 1, 3] = 200  # red at row 1, column 3
    image[2, 0, 0] = 9  # blue at row 0, column 0
    return image


def test_wandb_sink_gives_log_image_an_hwc_array_with_a_caption_and_numbers_to_log_metrics():
    logger = Calls("log_image", "log_metrics")
    sink = WandbSink(logger)
    sink.add_image("cam/layer4/gradcam", _image(), 7, "jpeg")
    sink.add_scalar("cam_drift/x", 0.25, 7)
    (_, _, image_call), (_, args, metric_call) = logger.calls
    pixels = image_call["images"][0]
    assert pixels.shape == (2, 4, 3) and pixels[1, 3, 0] == 200 and pixels[0, 0, 2] == 9
    assert image_call["key"] == "cam/layer4/gradcam" and image_call["step"] == 7
    assert image_call["caption"] == ["step 7"]
    assert args == ({"cam_drift/x": 0.25},) and metric_call == {"step": 7}


def test_mlflow_keys_keep_allowed_characters_and_replace_the_rest():
    assert mlflow_key("cam/model.features.-1/gradcam") == "cam/model.features.-1/gradcam"
    assert mlflow_key("cam/layer4/gradcam++") == "cam/layer4/gradcam__"


def test_mlflow_sink_logs_images_and_metrics_to_its_run():
    client = Calls("log_image", "log_metric")
    sink = MlflowSink(client, "run-1")
    sink.add_image("cam/layer4/gradcam++", _image(), 3)
    sink.add_scalar("cam_drift/a", 1.5, 3)
    (_, image_args, image_kw), (_, metric_args, metric_kw) = client.calls
    assert image_args[0] == "run-1" and image_args[1][1, 3, 0] == 200
    assert image_kw == {"key": "cam/layer4/gradcam__", "step": 3}
    assert metric_args == ("run-1", "cam_drift/a", 1.5) and metric_kw == {"step": 3}


@pytest.mark.parametrize("make", [lambda: WandbSink(object()), lambda: MlflowSink(object(), "r")])
def test_sinks_refuse_what_is_not_their_logger(make):
    with pytest.raises(TypeError, match="must be a"):
        make()


def test_images_only_passes_images_and_drops_numbers(tmp_path):
    sink = ImagesOnly(PngSink(tmp_path))
    publish([sink], [ImageRecord("cam/a", _image(), 2), ScalarRecord("cam_drift/a", 0.5, 2)])
    assert (tmp_path / "cam" / "a" / "step_00000002.png").exists()
    assert not (tmp_path / "scalars.csv").exists()
