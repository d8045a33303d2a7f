"""The file sink's one-file-per-tag layout (the end-of-fit summary PNGs) and `publish`."""

from __future__ import annotations

import cv2
import numpy as np
import torch

from cam_callback.sinks import ImageRecord, PngSink, ScalarRecord, publish


def test_one_file_per_tag_keeps_the_latest_image_in_a_flat_file(tmp_path):
    sink = PngSink(tmp_path, one_file_per_tag=True)
    first = torch.zeros(3, 2, 3, dtype=torch.uint8)
    last = torch.full((3, 2, 3), 200, dtype=torch.uint8)
    publish([sink], [ImageRecord("cam_summary/model.features.3/gradcam", first, 1)])
    publish([sink], [ImageRecord("cam_summary/model.features.3/gradcam", last, 5)])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cam_summary_model.features.3_gradcam.png"]
    read = cv2.imread(str(tmp_path / "cam_summary_model.features.3_gradcam.png"))
    assert read is not None
    assert read.shape == (2, 3, 3) and np.all(read == 200)


class Recorder:
    def __init__(self) -> None:
        self.calls: list[tuple] = []

    def add_image(self, tag, image, step, image_format="png"):
        self.calls.append(("image", tag, step, image_format))

    def add_scalar(self, tag, value, step):
        self.calls.append(("scalar", tag, value, step))

    def flush(self):
        self.calls.append(("flush",))


def test_publish_hands_every_record_to_every_sink_then_flushes_once():
    picture = torch.zeros(3, 2, 2, dtype=torch.uint8)
    records: list[ImageRecord | ScalarRecord] = [
        ImageRecord("a", picture, 3, "jpeg"),
        ScalarRecord("b", 0.5, 3),
    ]
    sinks = [Recorder(), Recorder()]
    publish(sinks, records)
    for sink in sinks:
        assert sink.calls == [("image", "a", 3, "jpeg"), ("scalar", "b", 0.5, 3), ("flush",)]
