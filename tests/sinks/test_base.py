"""What every sink takes, and `publish`: each record to each sink in order, one flush each, failures kept."""

from __future__ import annotations

import pytest
import torch
from torch.utils.tensorboard import SummaryWriter

from cam_callback.sinks import ImageRecord, MlflowSink, PngSink, Sink, TensorBoardSink, WandbSink, publish
from cam_callback.sinks.base import check_step, check_tag


class Recorder:
    def __init__(self, fail_on: str | None = None, fail_flush: bool = False) -> None:
        self.calls: list[tuple] = []
        self.fail_on = fail_on
        self.fail_flush = fail_flush

    def add_image(self, tag, image, step, image_format="png"):
        if tag == self.fail_on:
            raise OSError(f"disk full writing {tag}")
        self.calls.append(("image", tag, step, image_format, int(image.sum())))

    def flush(self):
        if self.fail_flush:
            raise OSError("flush failed")
        self.calls.append(("flush",))


def _picture(value: int) -> torch.Tensor:
    return torch.full((3, 2, 2), value, dtype=torch.uint8)


def test_every_sink_satisfies_the_protocol(tmp_path):
    writer = SummaryWriter(log_dir=str(tmp_path / "tb"))
    try:
        assert isinstance(TensorBoardSink(writer), Sink)
    finally:
        writer.close()
    assert isinstance(PngSink(tmp_path / "png"), Sink)

    class Logger:
        def log_image(self, **kwargs):
            pass

    class Client:
        def log_image(self, *args, **kwargs):
            pass

    assert isinstance(WandbSink(Logger()), Sink)
    assert isinstance(MlflowSink(Client(), "run"), Sink)
    assert not isinstance(object(), Sink)


def test_publish_hands_every_record_to_every_sink_in_order_then_flushes_once():
    records = [ImageRecord("a", _picture(1), 3, "jpeg"), ImageRecord("b", _picture(2), 3)]
    sinks = [Recorder(), Recorder()]
    assert publish(sinks, records) == []
    for sink in sinks:
        assert sink.calls == [("image", "a", 3, "jpeg", 12), ("image", "b", 3, "png", 24), ("flush",)]


def test_publish_keeps_failures_and_still_writes_the_rest():
    failing, fine = Recorder(fail_on="a", fail_flush=True), Recorder()
    records = [ImageRecord("a", _picture(1), 3), ImageRecord("b", _picture(2), 3)]
    errors = publish([failing, fine], records)
    assert [str(e) for e in errors] == ["disk full writing a", "flush failed"]
    assert failing.calls == [("image", "b", 3, "png", 24)]
    assert fine.calls == [("image", "a", 3, "png", 12), ("image", "b", 3, "png", 24), ("flush",)]


def test_tags_and_steps_are_checked():
    assert check_tag("cam/layer4/gradcam") == ["cam", "layer4", "gradcam"]
    assert check_tag("/cam//x/") == ["cam", "x"]
    for bad in ("../escape", "a/./b", "a\\b/c", "", "///"):
        with pytest.raises(ValueError, match="`tag`"):
            check_tag(bad)
    with pytest.raises(TypeError, match="`tag` must be a str"):
        check_tag(3)  # type: ignore[arg-type]
    assert check_step(0) == 0
    with pytest.raises(ValueError, match="`step` must be at least 0"):
        check_step(-1)
