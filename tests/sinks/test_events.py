"""Event files framed with the native CRC-32C: TensorBoard's writer's bytes, read back by its reader."""

from __future__ import annotations

import io
import struct

import cv2
import numpy as np
from events import read_events
from tensorboard.compat.proto.event_pb2 import Event
from tensorboard.compat.proto.summary_pb2 import Summary
from tensorboard.compat.tensorflow_stub.pywrap_tensorflow import masked_crc32c as python_masked_crc32c
from tensorboard.summary.writer.record_writer import RecordWriter
from torch.utils.tensorboard import SummaryWriter

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
