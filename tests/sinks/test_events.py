"""Event files framed with the native CRC-32C: TensorBoard's writer's bytes, read back by its reader."""

from __future__ import annotations

import errno
import io
import struct

import cv2
import numpy as np
import pytest
from events import read_events
from full_disk import FullDisk, fill, small_tmpfs
from tensorboard.compat.proto.event_pb2 import Event
from tensorboard.compat.proto.summary_pb2 import Summary
from tensorboard.compat.tensorflow_stub.pywrap_tensorflow import masked_crc32c as python_masked_crc32c
from tensorboard.summary.writer.record_writer import RecordWriter
from torch.utils.tensorboard import SummaryWriter

from cam_callback.sinks import WriteFailure
from cam_callback.sinks.events import EventFile, frame_record, image_event, masked_crc32c


def _png(seed: int, height: int = 5, width: int = 7) -> bytes:
    pixels = np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)
    return cv2.imencode(".png", pixels)[1].tobytes()


def scalar_event(tag: str, value: float, step: int, wall_time: float) -> Event:
    """A scalar event as TensorBoard's own writer makes it (the framing must not care what an event holds)."""
    summary = Summary(value=[Summary.Value(tag=tag, simple_value=value)])
    return Event(wall_time=wall_time, step=step, summary=summary)


def _records(data: bytes) -> list[bytes]:
    """Split an event file into its records' payloads (lengths read by hand, CRCs skipped)."""
    payloads, offset = [], 0
    while offset < len(data):
        (length,) = struct.unpack_from("<Q", data, offset)
        payloads.append(data[offset + 12 : offset + 12 + length])
        offset += 12 + length + 4
    return payloads


def test_masked_crc_of_the_standard_check_string():
    # CRC-32C("123456789") is 0xE3069283 (the catalogued check value);
    # masked: rotate right by 15 bits, add 0xa282ead8.
    crc = 0xE3069283
    expected = (((crc >> 15) | (crc << 17)) + 0xA282EAD8) & 0xFFFFFFFF
    assert masked_crc32c(b"123456789") == expected


def test_masked_crc_agrees_with_tensorboards_pure_python_one():
    for data in (b"", b"\x00", bytes(range(256)), _png(0), b"x" * 1000):
        assert masked_crc32c(data) == python_masked_crc32c(data)


def test_framing_is_byte_identical_to_tensorboards_record_writer():
    events = [
        Event(wall_time=1.5, file_version="brain.Event:2"),
        image_event("cam/layer4/gradcam", _png(1), 5, 7, 3, 2.25),
        scalar_event("cam_drift/layer4/gradcam/change_prev", 0.125, 3, 2.5),
    ]
    theirs = io.BytesIO()
    writer = RecordWriter(theirs)
    for event in events:
        writer.write(event.SerializeToString())
    ours = b"".join(frame_record(event.SerializeToString()) for event in events)
    assert ours == theirs.getvalue()


def test_event_file_is_read_back_by_tensorboard_in_order(tmp_path):
    events = EventFile(tmp_path)
    events.flush()
    assert events.path is None and not list(tmp_path.iterdir())  # nothing to write, no file
    pictures = [_png(seed) for seed in range(3)]
    for step, picture in enumerate(pictures):
        events.add(image_event("cam/x", picture, 5, 7, step * 10, 100.0 + step))
        events.add(scalar_event("cam_drift/x", step / 4, step * 10, 100.0 + step))
        events.flush()  # one append per validation, the file made at the first
    assert events.path is not None and "tfevents" in events.path.name

    acc = read_events(tmp_path)  # its reader checks both CRCs of every record
    images = acc.Images("cam/x")
    assert [(e.step, e.encoded_image_string, e.height, e.width) for e in images] == [
        (0, pictures[0], 5, 7),
        (10, pictures[1], 5, 7),
        (20, pictures[2], 5, 7),
    ]
    assert [(e.step, e.value) for e in acc.Scalars("cam_drift/x")] == [(0, 0.0), (10, 0.25), (20, 0.5)]

    payloads = _records(events.path.read_bytes())
    assert Event.FromString(payloads[0]).file_version == "brain.Event:2"
    rewritten = io.BytesIO()
    writer = RecordWriter(rewritten)
    for payload in payloads:
        writer.write(payload)
    assert rewritten.getvalue() == events.path.read_bytes()


def test_beside_the_loggers_own_file_both_runs_steps_survive(tmp_path):
    # The logger's file holds steps 0..30; ours, made later, steps 0..20. With file_version 2 TensorBoard
    # purges only on a restart marker, so neither file's earlier steps are dropped.
    logger = SummaryWriter(log_dir=str(tmp_path))
    for step in (0, 10, 20, 30):
        logger.add_scalar("val_loss", 1.0 / (1 + step), global_step=step)
    logger.flush()
    ours = EventFile(logger.get_logdir())
    for step in (0, 10, 20):
        ours.add(scalar_event("cam_drift/x", float(step), step, 1.0))
        ours.add(image_event("cam/x", _png(step), 5, 7, step, 1.0))
    ours.flush()
    logger.add_scalar("val_loss", 0.5, global_step=40)  # the logger goes on after ours was written
    logger.close()

    acc = read_events(str(tmp_path))
    assert [e.step for e in acc.Scalars("val_loss")] == [0, 10, 20, 30, 40]
    assert [e.step for e in acc.Scalars("cam_drift/x")] == [0, 10, 20]
    assert [e.step for e in acc.Images("cam/x")] == [0, 10, 20]
    assert len(list(tmp_path.glob("*tfevents*"))) == 2


def _validation(events: EventFile, step: int, count: int = 2, side: int = 5) -> list[bytes]:
    pictures = [_png(step * 100 + i, side, side) for i in range(count)]
    for i, picture in enumerate(pictures):
        events.add(image_event(f"cam/x{i}", picture, side, side, step, 100.0 + step))
    return pictures


def test_a_half_write_on_a_full_disk_leaves_every_later_record_readable(tmp_path, monkeypatch):
    disk = FullDisk(monkeypatch)
    events = EventFile(tmp_path)
    shown = {0: _validation(events, 0)}
    events.flush()
    disk.full = True
    shown[1] = _validation(events, 1)
    with pytest.raises(WriteFailure) as raised:
        events.flush()  # half of the records reach the disk, then ENOSPC
    assert raised.value.errno == errno.ENOSPC
    assert raised.value.lost == [] and raised.value.kept == [("cam/x0", 1), ("cam/x1", 1)]
    disk.full = False
    for step in (2, 3, 4, 5):
        shown[step] = _validation(events, step)
        events.flush()
    acc = read_events(tmp_path)  # its reader checks both CRCs of every record, and stops at a bad one
    for i in range(2):
        assert [(e.step, e.encoded_image_string) for e in acc.Images(f"cam/x{i}")] == [
            (step, shown[step][i]) for step in range(6)
        ]
    assert events.waiting == 0


def test_memory_stays_bounded_while_nothing_can_be_written(tmp_path, monkeypatch):
    disk = FullDisk(monkeypatch, full=True)
    events = EventFile(tmp_path)  # the backlog: the last failed flush's records only
    for step in range(50):
        _validation(events, step, count=3)
        with pytest.raises(WriteFailure) as raised:
            events.flush()
        assert events.waiting == 3  # this validation's three records, never more
        assert raised.value.kept == [(f"cam/x{i}", step) for i in range(3)]
        assert raised.value.lost == ([(f"cam/x{i}", step - 1) for i in range(3)] if step else [])
    assert disk.failures == 50
    assert events.path is not None and events.path.stat().st_size == 0  # not a byte of a half record
    disk.full = False
    events.flush()
    assert [e.step for e in read_events(tmp_path).Images("cam/x2")] == [49]


def test_on_a_real_full_tmpfs_every_record_is_written_or_named_as_lost(tmp_path):
    with small_tmpfs(tmp_path / "disk", "256k") as disk:
        events = EventFile(disk / "run")
        written: dict[int, bytes] = {}
        lost: set[int] = set()
        filler = fill(disk, leave=40_000)
        failures = 0
        for step in range(8):  # about 12 KB a validation: the disk fills up after three
            if step == 6:
                filler.unlink()  # room again
            written[step] = _validation(events, step, count=1, side=64)[0]
            try:
                events.flush()
            except WriteFailure as failure:
                failures += 1
                lost |= {s for _, s in failure.lost}
        assert failures >= 2
        acc = read_events(disk / "run")
        seen = [(e.step, e.encoded_image_string) for e in acc.Images("cam/x0")]
        assert seen == [(step, written[step]) for step in range(8) if step not in lost]
        assert 5 in dict(seen) and 6 in dict(seen)  # the last kept validation, written when room came back
