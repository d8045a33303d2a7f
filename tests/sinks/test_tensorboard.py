"""The TensorBoard sink: images in an event file of its own beside the writer's, read back by TensorBoard."""

import numpy as np
import pytest
import torch
from events import read_events
from tensorboard.plugins.custom_scalar import layout_pb2
from tensorboard.plugins.custom_scalar import metadata as custom_scalars
from torch.utils.tensorboard import SummaryWriter

from cam_callback.sinks import ChartGroup, TensorBoardSink

from .sink_helpers import decode_rgb, picture


def test_tensorboard_sink_round_trip(tmp_path):
    writer = SummaryWriter(log_dir=str(tmp_path))
    sink = TensorBoardSink(writer)
    first, second = picture(0), picture(1)
    sink.add_image("cam/overlay", first, step=3)
    sink.add_image("cam/overlay", second, step=7)
    sink.add_image("cam/history", picture(2, 4, 4), step=7)
    sink.flush()
    writer.close()

    events = read_events(str(tmp_path))
    assert sorted(events.Tags()["images"]) == ["cam/history", "cam/overlay"]
    assert events.Tags()["scalars"] == []  # images only: the numbers reach TensorBoard through Lightning
    overlays = events.Images("cam/overlay")
    assert [e.step for e in overlays] == [3, 7]
    assert (overlays[0].height, overlays[0].width) == (6, 9)
    # PNG is lossless: the pixels come back exactly (RGB, CHW -> HWC).
    assert (decode_rgb(overlays[0].encoded_image_string) == first.permute(1, 2, 0).numpy()).all()
    assert (decode_rgb(overlays[1].encoded_image_string) == second.permute(1, 2, 0).numpy()).all()


def test_tensorboard_sink_writes_jpeg_that_decodes_close_to_the_image(tmp_path):
    writer = SummaryWriter(log_dir=str(tmp_path))
    sink = TensorBoardSink(writer)
    # A smooth picture (JPEG's home ground): horizontal and vertical ramps, 40 x 64.
    rows = torch.linspace(0, 255, 40)[:, None].expand(40, 64)
    cols = torch.linspace(0, 255, 64)[None, :].expand(40, 64)
    smooth = torch.stack([rows, cols, 255 - rows]).round().to(torch.uint8)
    sink.add_image("cam/overlay", smooth, step=5, image_format="jpeg")
    sink.add_image("cam/overlay", picture(0), step=6, image_format="png")
    sink.flush()
    writer.close()

    events = read_events(str(tmp_path))
    jpeg, png = events.Images("cam/overlay")
    assert (jpeg.step, jpeg.height, jpeg.width) == (5, 40, 64)
    assert jpeg.encoded_image_string.startswith(b"\xff\xd8\xff")  # the JPEG start-of-image marker
    decoded = decode_rgb(jpeg.encoded_image_string).astype(int)
    error = np.abs(decoded - smooth.permute(1, 2, 0).numpy().astype(int))
    assert error.mean() < 2 and error.max() < 16  # quality 90 on ramps: within a few levels
    assert (decode_rgb(png.encoded_image_string) == picture(0).permute(1, 2, 0).numpy()).all()


def test_tensorboard_sink_rejects_non_writers_and_bad_images(tmp_path):
    with pytest.raises(TypeError, match="`writer`"):
        TensorBoardSink(object())
    writer = SummaryWriter(log_dir=str(tmp_path))
    try:
        sink = TensorBoardSink(writer)
        with pytest.raises(TypeError, match="uint8"):
            sink.add_image("x", torch.rand(3, 4, 4), step=0)
        with pytest.raises(ValueError, match=r"\[3, H, W\]"):
            sink.add_image("x", torch.zeros(4, 4, dtype=torch.uint8), step=0)
    finally:
        writer.close()


def test_image_format_must_be_png_or_jpeg(tmp_path):
    writer = SummaryWriter(log_dir=str(tmp_path / "tb"))
    try:
        with pytest.raises(ValueError, match=r"unknown 'gif'; valid: 'png', 'jpeg'"):
            TensorBoardSink(writer).add_image("x", picture(0), step=0, image_format="gif")
    finally:
        writer.close()


def test_a_writer_without_a_folder_gets_the_images_through_its_own_add_image():
    class Plain:
        def __init__(self):
            self.calls = []

        def add_image(self, tag, image, global_step, dataformats):
            self.calls.append((tag, int(image.sum()), global_step, dataformats))

        def flush(self):
            self.calls.append("flush")

    plain = Plain()
    sink = TensorBoardSink(plain)
    sink.add_image("cam/x", torch.ones(3, 2, 2, dtype=torch.uint8), step=4)
    sink.flush()
    assert plain.calls == [("cam/x", 12, 4, "CHW"), "flush"]


def _layout_in(folder) -> layout_pb2.Layout:
    """The one Custom Scalars layout of the run folder, as TensorBoard's reader finds it."""
    events = read_events(folder)
    assert events.Tags()["tensors"] == [custom_scalars.CONFIG_SUMMARY_TAG]
    (point,) = events.Tensors(custom_scalars.CONFIG_SUMMARY_TAG)
    metadata = events.SummaryMetadata(custom_scalars.CONFIG_SUMMARY_TAG)
    assert metadata.plugin_data.plugin_name == "custom_scalars"
    layout = layout_pb2.Layout()
    layout.ParseFromString(point.tensor_proto.string_val[0])
    return layout


def test_a_layout_is_written_as_the_custom_scalars_plugin_reads_it(tmp_path):
    writer = SummaryWriter(str(tmp_path))
    sink = TensorBoardSink(writer)
    groups = [
        ChartGroup("cam/a/gradcam", (("drift", (r"cam_drift/a/gradcam/",)), ("focus", ("f1", "f2")))),
        ChartGroup("cam/b/gradcam\\+\\+", (("drift", ("x",)),)),
    ]
    sink.add_layout(groups)  # written at once: no flush of its own needed
    writer.close()
    layout = _layout_in(tmp_path)
    read = [
        (c.title, [(chart.title, list(chart.multiline.tag)) for chart in c.chart]) for c in layout.category
    ]
    assert read == [
        ("cam/a/gradcam", [("drift", ["cam_drift/a/gradcam/"]), ("focus", ["f1", "f2"])]),
        ("cam/b/gradcam\\+\\+", [("drift", ["x"])]),
    ]


def test_a_writer_without_a_folder_gets_the_layout_through_its_own_add_custom_scalars():
    class Plain:
        def __init__(self):
            self.calls = []

        def add_image(self, *args):
            raise AssertionError("no image here")

        def add_custom_scalars(self, layout):
            self.calls.append(layout)

        def flush(self):
            self.calls.append("flush")

    plain = Plain()
    TensorBoardSink(plain).add_layout([ChartGroup("cam/a/m", (("drift", ("t1", "t2")),))])
    assert plain.calls == [{"cam/a/m": {"drift": ["Multiline", ["t1", "t2"]]}}, "flush"]
