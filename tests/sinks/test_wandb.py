"""The W&B sink hands a WandbLogger's `log_image` what it takes (a fake records the calls)."""

from __future__ import annotations

import pytest

from cam_callback.sinks import WandbSink

from .sink_helpers import Calls, two_marks


def test_wandb_sink_gives_log_image_an_hwc_array_with_a_caption():
    logger = Calls("log_image")
    sink = WandbSink(logger)
    sink.add_image("cam/layer4/gradcam", two_marks(), 7, "jpeg")
    sink.flush()
    ((_, _, image_call),) = logger.calls
    pixels = image_call["images"][0]
    assert pixels.shape == (2, 4, 3) and pixels[1, 3, 0] == 200 and pixels[0, 0, 2] == 9
    assert image_call["key"] == "cam/layer4/gradcam" and image_call["step"] == 7
    assert image_call["caption"] == ["step 7"]


def test_wandb_sink_refuses_what_is_not_a_wandb_logger():
    with pytest.raises(TypeError, match="must be a WandbLogger"):
        WandbSink(object())
    with pytest.raises(ValueError, match="'gif'"):
        WandbSink(Calls("log_image")).add_image("x", two_marks(), 0, "gif")
