"""The background writer: jobs in order off the calling thread, a bounded queue, failures kept once."""

from __future__ import annotations

import threading
import time
from functools import partial

import pytest
import torch
from events import read_events
from torch.utils.tensorboard import SummaryWriter

from cam_callback.sinks import BackgroundWriter, ImageRecord, TensorBoardSink, publish


class Log:
    """Jobs that note what ran, in which thread; one may wait at a gate, one may fail."""

    def __init__(self, gate: threading.Event | None = None) -> None:
        self.ran: list[int] = []
        self.threads: set[str] = set()
        self.gate = gate

    def job(self, n: int, failures: int = 0, raises: bool = False):
        def run():
            if self.gate is not None:
                self.gate.wait(timeout=10)
            self.threads.add(threading.current_thread().name)
            if raises:
                raise OSError(f"job {n} raised")
            self.ran.append(n)
            return [OSError(f"job {n} failure {i}") for i in range(failures)]

        return run


def test_jobs_run_in_order_off_the_calling_thread():
    log = Log()
    writer = BackgroundWriter()
    for n in (1, 2, 3):
        writer.submit(log.job(n))
    writer.close()
    assert log.ran == [1, 2, 3]
    assert log.threads == {"cam_callback-writer"}
    assert writer.take_errors() == []


def test_a_full_queue_makes_submit_wait_and_drops_nothing():
    gate = threading.Event()
    log = Log(gate)
    writer = BackgroundWriter(max_pending=1)
    writer.submit(log.job(1))  # taken up by the thread, which waits at the gate
    deadline = time.monotonic() + 10
    while writer.pending and time.monotonic() < deadline:
        time.sleep(0.01)
    writer.submit(log.job(2))  # waits in the queue: now full
    returned = threading.Event()

    def third() -> None:
        writer.submit(log.job(3))
        returned.set()

    submitter = threading.Thread(target=third)
    submitter.start()
    assert not returned.wait(timeout=0.3)  # still waiting for room
    assert writer.pending == 1
    gate.set()
    assert returned.wait(timeout=10)
    submitter.join()
    writer.close()
    assert log.ran == [1, 2, 3]


def test_failures_returned_or_raised_are_kept_once_and_later_jobs_still_run():
    log = Log()
    writer = BackgroundWriter()
    writer.submit(log.job(1, failures=2))
    writer.submit(log.job(2, raises=True))
    writer.submit(log.job(3))
    writer.drain()
    errors = writer.take_errors()
    assert [str(e) for e in errors] == ["job 1 failure 0", "job 1 failure 1", "job 2 raised"]
    assert writer.take_errors() == []  # reported once
    assert log.ran == [1, 3]
    writer.close()


def test_closed_writer_refuses_more_and_close_twice_is_harmless():
    writer = BackgroundWriter()
    writer.close()
    writer.close()
    with pytest.raises(RuntimeError, match="closed"):
        writer.submit(Log().job(1))
    with pytest.raises(ValueError, match="`max_pending`"):
        BackgroundWriter(max_pending=0)


def test_writing_to_tensorboard_in_the_background_leaves_torch_rng_alone(tmp_path):
    torch.manual_seed(3)
    before = torch.get_rng_state()
    summary = SummaryWriter(log_dir=str(tmp_path))
    sink = TensorBoardSink(summary)
    writer = BackgroundWriter()
    images = [
        torch.randint(0, 256, (3, 8, 8), dtype=torch.uint8, generator=torch.Generator().manual_seed(s))
        for s in range(3)
    ]
    for step, image in enumerate(images):
        writer.submit(partial(publish, [sink], [ImageRecord("cam/a", image, step, "png")]))
    writer.close()
    summary.close()
    assert torch.equal(torch.get_rng_state(), before)
    assert writer.take_errors() == []
    acc = read_events(str(tmp_path))
    assert [e.step for e in acc.Images("cam/a")] == [0, 1, 2]
