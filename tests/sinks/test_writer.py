"""The background writer: order, bounded queue, failures kept for the caller, draining and closing."""

from __future__ import annotations

import threading
import time

import pytest
import torch
from events import read_events
from torch.utils.tensorboard import SummaryWriter

from cam_callback.sinks import BackgroundWriter, ImageRecord, ScalarRecord, TensorBoardSink


class Recorder:
    """A sink that notes every call, in order (and which thread made it)."""

    def __init__(self, gate: threading.Event | None = None, fail_on: str | None = None) -> None:
        self.calls: list[tuple] = []
        self.threads: set[str] = set()
        self.gate = gate
        self.fail_on = fail_on
        self.closed = False

    def add_image(self, tag, image, step, image_format="png"):
        if self.gate is not None:
            self.gate.wait(timeout=10)
        if tag == self.fail_on:
            raise OSError(f"disk full writing {tag}")
        self.threads.add(threading.current_thread().name)
        self.calls.append(("image", tag, step, image_format, int(image.sum())))

    def add_scalar(self, tag, value, step):
        self.calls.append(("scalar", tag, step, value))

    def flush(self):
        self.calls.append(("flush",))

    def close(self):
        self.closed = True


def _picture(value: int) -> torch.Tensor:
    return torch.full((3, 2, 2), value, dtype=torch.uint8)


def _validation(step: int) -> list:
    return [ImageRecord("cam/a", _picture(step), step, "jpeg"), ScalarRecord("cam/n", step / 2, step)]


def test_records_reach_every_sink_in_order_off_the_calling_thread():
    first, second = Recorder(), Recorder()
    writer = BackgroundWriter([first, second])
    for step in (1, 2, 3):
        writer.submit(_validation(step))
    writer.close()
    expected = []
    for step in (1, 2, 3):
        expected += [
            ("image", "cam/a", step, "jpeg", 12 * step),
            ("scalar", "cam/n", step, step / 2),
            ("flush",),
        ]
    assert first.calls == expected and second.calls == expected
    assert first.threads == {"cam_callback-writer"}
    assert first.closed and second.closed
    assert writer.take_errors() == []


def test_a_batch_can_name_its_own_sinks():
    usual, extra = Recorder(), Recorder()
    writer = BackgroundWriter([usual])
    writer.submit(_validation(1))
    writer.submit([ImageRecord("cam_summary/a", _picture(9), 1)], [usual, extra])
    writer.drain()
    assert [c[1] for c in usual.calls if c[0] == "image"] == ["cam/a", "cam_summary/a"]
    assert extra.calls == [("image", "cam_summary/a", 1, "png", 108), ("flush",)]
    writer.close()


def test_a_full_queue_makes_submit_wait_and_drops_nothing():
    gate = threading.Event()
    slow = Recorder(gate)
    writer = BackgroundWriter([slow], max_pending=1)
    writer.submit(_validation(1))  # taken up by the thread, which waits at the gate
    deadline = time.monotonic() + 10
    while writer.pending and time.monotonic() < deadline:
        time.sleep(0.01)
    writer.submit(_validation(2))  # waits in the queue: now full
    returned = threading.Event()

    def third() -> None:
        writer.submit(_validation(3))
        returned.set()

    submitter = threading.Thread(target=third)
    submitter.start()
    assert not returned.wait(timeout=0.3)  # still waiting for room
    assert writer.pending == 1
    gate.set()
    assert returned.wait(timeout=10)
    submitter.join()
    writer.close()
    assert [c[2] for c in slow.calls if c[0] == "image"] == [1, 2, 3]


def test_failures_are_kept_once_and_the_other_records_still_written():
    sink = Recorder(fail_on="cam/bad")
    writer = BackgroundWriter([sink])
    writer.submit([ImageRecord("cam/bad", _picture(1), 1), ScalarRecord("cam/n", 0.5, 1)])
    writer.drain()
    errors = writer.take_errors()
    assert [str(e) for e in errors] == ["disk full writing cam/bad"]
    assert writer.take_errors() == []  # reported once
    assert sink.calls == [("scalar", "cam/n", 1, 0.5), ("flush",)]
    writer.close()


def test_closed_writer_refuses_more_and_close_twice_is_harmless():
    writer = BackgroundWriter([Recorder()])
    writer.close()
    writer.close()
    with pytest.raises(RuntimeError, match="closed"):
        writer.submit(_validation(1))
    with pytest.raises(ValueError, match="`max_pending`"):
        BackgroundWriter([], max_pending=0)


def test_writing_to_tensorboard_in_the_background_leaves_torch_rng_alone(tmp_path):
    torch.manual_seed(3)
    before = torch.get_rng_state()
    summary = SummaryWriter(log_dir=str(tmp_path))
    writer = BackgroundWriter([TensorBoardSink(summary)])
    images = [
        torch.randint(0, 256, (3, 8, 8), dtype=torch.uint8, generator=torch.Generator().manual_seed(s))
        for s in range(3)
    ]
    for step, image in enumerate(images):
        writer.submit([ImageRecord("cam/a", image, step, "png"), ScalarRecord("cam/n", float(step), step)])
    writer.close()
    summary.close()
    assert torch.equal(torch.get_rng_state(), before)
    acc = read_events(str(tmp_path))
    assert [e.step for e in acc.Images("cam/a")] == [0, 1, 2]
    assert [(e.step, e.value) for e in acc.Scalars("cam/n")] == [(0, 0.0), (1, 1.0), (2, 2.0)]
