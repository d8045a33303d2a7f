import csv

import cv2
import numpy as np
import pytest
import torch
from events import read_events
from torch.utils.tensorboard import SummaryWriter

from cam_callback.sinks import PngSink, Sink, TensorBoardSink


def picture(seed: int, height: int = 6, width: int = 9) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (3, height, width), generator=generator, dtype=torch.uint8)


def decode_rgb(png_bytes: bytes) -> np.ndarray:
    bgr = cv2.imdecode(np.frombuffer(png_bytes, dtype=np.uint8), cv2.IMREAD_COLOR)
    assert bgr is not None
    return bgr[:, :, ::-1]


def test_sinks_satisfy_the_protocol(tmp_path):
    writer = SummaryWriter(log_dir=str(tmp_path / "tb"))
    try:
        assert isinstance(TensorBoardSink(writer), Sink)
    finally:
        writer.close()
    assert isinstance(PngSink(tmp_path / "png"), Sink)


def test_tensorboard_sink_round_trip(tmp_path):
    writer = SummaryWriter(log_dir=str(tmp_path))
    sink = TensorBoardSink(writer)
    first, second = picture(0), picture(1)
    sink.add_image("cam/overlay", first, step=3)
    sink.add_image("cam/overlay", second, step=7)
    sink.add_image("cam/history", picture(2, 4, 4), step=7)
    sink.add_scalar("cam/mean", 0.25, step=3)
    sink.add_scalar("cam/mean", 0.75, step=7)
    sink.flush()
    writer.close()

    events = read_events(str(tmp_path))
    assert sorted(events.Tags()["images"]) == ["cam/history", "cam/overlay"]
    assert events.Tags()["scalars"] == ["cam/mean"]
    overlays = events.Images("cam/overlay")
    assert [e.step for e in overlays] == [3, 7]
    assert (overlays[0].height, overlays[0].width) == (6, 9)
    # PNG is lossless: the pixels come back exactly (RGB, CHW -> HWC).
    assert (decode_rgb(overlays[0].encoded_image_string) == first.permute(1, 2, 0).numpy()).all()
    assert (decode_rgb(overlays[1].encoded_image_string) == second.permute(1, 2, 0).numpy()).all()
    assert [(e.step, e.value) for e in events.Scalars("cam/mean")] == [(3, 0.25), (7, 0.75)]


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


def test_image_format_must_be_png_or_jpeg(tmp_path):
    writer = SummaryWriter(log_dir=str(tmp_path / "tb"))
    try:
        with pytest.raises(ValueError, match=r"unknown 'gif'; valid: 'png', 'jpeg'"):
            TensorBoardSink(writer).add_image("x", picture(0), step=0, image_format="gif")
    finally:
        writer.close()
    with pytest.raises(ValueError, match="'gif'"):
        PngSink(tmp_path / "png").add_image("x", picture(0), step=0, image_format="gif")


def test_png_sink_writes_png_files_whatever_the_format(tmp_path):
    sink = PngSink(tmp_path)
    sink.add_image("cam/overlay", picture(4), step=2, image_format="jpeg")
    written = sink.image_path("cam/overlay", 2).read_bytes()
    assert written.startswith(b"\x89PNG")
    assert (decode_rgb(written) == picture(4).permute(1, 2, 0).numpy()).all()


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


def test_png_sink_writes_documented_paths_and_pixels(tmp_path):
    sink = PngSink(tmp_path / "out")
    assert not (tmp_path / "out").exists()  # nothing made until something is written
    image = picture(3)
    sink.add_image("cam/overlay/val", image, step=12)
    sink.add_image("summary", picture(4), step=0)

    path = tmp_path / "out" / "cam" / "overlay" / "val" / "step_00000012.png"
    assert path.is_file()
    assert sink.image_path("cam/overlay/val", 12) == path
    bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
    assert bgr is not None
    assert (bgr[:, :, ::-1] == image.permute(1, 2, 0).numpy()).all()
    # Red stays red: pure red RGB is stored so that OpenCV (BGR) reads (0, 0, 255).
    red = torch.zeros(3, 2, 2, dtype=torch.uint8)
    red[0] = 255
    sink.add_image("red", red, step=1)
    read = cv2.imread(str(tmp_path / "out" / "red" / "step_00000001.png"))
    assert read is not None and (read[0, 0] == [0, 0, 255]).all()
    assert (tmp_path / "out" / "summary" / "step_00000000.png").is_file()


def test_png_sink_scalars_csv(tmp_path):
    sink = PngSink(tmp_path)
    sink.add_scalar("cam/mean", 0.5, step=1)
    sink.add_scalar("cam/mean", 0.125, step=2)
    PngSink(tmp_path).add_scalar("cam/area", 3, step=2)  # a second sink on the same folder appends
    sink.flush()
    with (tmp_path / "scalars.csv").open(newline="") as handle:
        rows = list(csv.reader(handle))
    assert rows == [
        ["tag", "step", "value"],
        ["cam/mean", "1", "0.5"],
        ["cam/mean", "2", "0.125"],
        ["cam/area", "2", "3.0"],
    ]


@pytest.mark.parametrize("tag", ["../escape", "a/./b", "", "///"])
def test_png_sink_refuses_tags_that_are_not_paths_inside(tmp_path, tag):
    with pytest.raises(ValueError, match="`tag`"):
        PngSink(tmp_path).add_image(tag, picture(0), step=0)


def test_png_sink_rejects_negative_steps(tmp_path):
    with pytest.raises(ValueError, match="`step`"):
        PngSink(tmp_path).add_image("a", picture(0), step=-1)
