"""The MLflow sink hands an MlflowClient's `log_image` what it takes, under keys MLflow accepts."""

from __future__ import annotations

import pytest

from cam_callback.sinks import MlflowSink
from cam_callback.sinks.mlflow import mlflow_key

from .sink_helpers import Calls, two_marks


def test_mlflow_keys_keep_allowed_characters_and_replace_the_rest():
    assert mlflow_key("cam/model.features.-1/gradcam") == "cam/model.features.-1/gradcam"
    assert mlflow_key("cam/layer4/gradcam++") == "cam/layer4/gradcam__"


def test_mlflow_sink_logs_images_to_its_run():
    client = Calls("log_image")
    sink = MlflowSink(client, "run-1")
    sink.add_image("cam/layer4/gradcam++", two_marks(), 3)
    sink.flush()
    ((_, image_args, image_kw),) = client.calls
    assert image_args[0] == "run-1" and image_args[1].shape == (2, 4, 3) and image_args[1][1, 3, 0] == 200
    assert image_kw == {"key": "cam/layer4/gradcam__", "step": 3}


def test_mlflow_sink_refuses_what_is_not_a_client():
    with pytest.raises(TypeError, match="must be an MlflowClient"):
        MlflowSink(object(), "r")
