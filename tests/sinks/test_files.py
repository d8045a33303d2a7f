"""The file sinks: PNG files per tag and step (or one per tag), and the CSV of numbers without a logger."""

import csv

import cv2
import numpy as np
import pytest
import torch
from full_disk import FullDisk, fill, small_tmpfs

from cam_callback.sinks import ImageRecord, PngSink, ScalarsCsv, WriteFailure, publish

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


def _all_files(folder):
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file())


def test_a_full_disk_leaves_no_empty_png_and_the_images_come_when_room_does(tmp_path, monkeypatch):
    disk = FullDisk(monkeypatch, full=True)
    sink = PngSink(tmp_path)
    errors = publish([sink], [ImageRecord("cam/a", picture(1), 3), ImageRecord("cam/b", picture(2), 3)])
    assert len(errors) == 1 and isinstance(errors[0], WriteFailure)
    assert errors[0].kept == [("cam/a", 3), ("cam/b", 3)] and errors[0].lost == []
    assert _all_files(tmp_path) == []  # no empty, cut or temporary file
    errors = publish([sink], [ImageRecord("cam/a", picture(3), 4)])
    assert isinstance(errors[0], WriteFailure)
    assert errors[0].lost == [("cam/a", 3), ("cam/b", 3)]  # the backlog is the latest validation only
    assert errors[0].kept == [("cam/a", 4)]
    assert _all_files(tmp_path) == []
    disk.full = False
    assert publish([sink], [ImageRecord("cam/a", picture(5), 5)]) == []
    assert _all_files(tmp_path) == ["cam/a/step_00000004.png", "cam/a/step_00000005.png"]
    for step, seed in ((4, 3), (5, 5)):
        written = sink.image_path("cam/a", step).read_bytes()
        assert (decode_rgb(written) == picture(seed).permute(1, 2, 0).numpy()).all()


def test_on_a_real_full_tmpfs_no_png_file_is_empty(tmp_path):
    with small_tmpfs(tmp_path / "disk", "64k") as disk:
        sink = PngSink(disk / "run")
        fill(disk, leave=8_000)
        failed = 0
        for step in range(6):
            noise = np.random.default_rng(step).integers(0, 256, (3, 40, 40), dtype=np.uint8)
            image = torch.from_numpy(noise)
            failed += len(publish([sink], [ImageRecord("cam/a", image, step)]))
        assert failed >= 1
        files = [p for p in (disk / "run").rglob("*") if p.is_file()]
        assert all(p.stat().st_size > 0 and p.suffix == ".png" and not p.name.startswith(".") for p in files)
        for path in files:
            assert cv2.imread(str(path)) is not None  # each one a whole PNG


def test_scalars_csv_on_a_full_disk_keeps_whole_rows_and_writes_them_later(tmp_path, monkeypatch):
    disk = FullDisk(monkeypatch)
    path = tmp_path / "scalars.csv"
    table = ScalarsCsv(path)
    table.append({"cam/mean": 0.5}, step=1)
    disk.full = True
    (failure,) = table.append({"cam/mean": 0.25}, step=2)
    assert isinstance(failure, WriteFailure) and failure.kept == [("cam/mean", 2)]
    assert path.read_bytes() == b"tag,step,value\r\ncam/mean,1,0.5\r\n"  # no cut row
    disk.full = False
    assert table.append({"cam/mean": 0.125}, step=3) == []
    with path.open(newline="") as handle:
        assert [row[1] for row in csv.reader(handle)] == ["step", "1", "2", "3"]
