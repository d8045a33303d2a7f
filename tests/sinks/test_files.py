"""The file sinks: PNG files per tag and step (or one per tag), and the CSV of numbers without a logger."""

import csv

import cv2
import numpy as np
import pytest
import torch

from cam_callback.sinks import ImageRecord, PngSink, ScalarsCsv, publish

from .sink_helpers import decode_rgb, picture


def test_png_sink_writes_png_files_whatever_the_format(tmp_path):
    sink = PngSink(tmp_path)
    sink.add_image("cam/overlay", picture(4), step=2, image_format="jpeg")
    written = sink.image_path("cam/overlay", 2).read_bytes()
    assert written.startswith(b"\x89PNG")
    assert (decode_rgb(written) == picture(4).permute(1, 2, 0).numpy()).all()


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


def test_png_sink_refuses_an_unknown_format(tmp_path):
    with pytest.raises(ValueError, match="'gif'"):
        PngSink(tmp_path / "png").add_image("x", picture(0), step=0, image_format="gif")


@pytest.mark.parametrize("tag", ["../escape", "a/./b", "", "///"])
def test_png_sink_refuses_tags_that_are_not_paths_inside(tmp_path, tag):
    with pytest.raises(ValueError, match="`tag`"):
        PngSink(tmp_path).add_image(tag, picture(0), step=0)


def test_png_sink_rejects_negative_steps(tmp_path):
    with pytest.raises(ValueError, match="`step`"):
        PngSink(tmp_path).add_image("a", picture(0), step=-1)


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


def test_scalars_csv_appends_rows_under_one_header(tmp_path):
    path = tmp_path / "run" / "scalars.csv"
    assert ScalarsCsv(path).append({"cam/mean": 0.5}, step=1) == []
    ScalarsCsv(path).append({"cam/mean": 0.125, "cam/area": 3}, step=2)  # a second writer appends
    ScalarsCsv(path).append({}, step=3)  # nothing to write: no row
    with path.open(newline="") as handle:
        rows = list(csv.reader(handle))
    assert rows == [
        ["tag", "step", "value"],
        ["cam/mean", "1", "0.5"],
        ["cam/mean", "2", "0.125"],
        ["cam/area", "2", "3.0"],
    ]
    with pytest.raises(ValueError, match="`step`"):
        ScalarsCsv(path).append({"x": 1.0}, step=-1)
