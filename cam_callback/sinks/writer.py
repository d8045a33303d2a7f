"""One background thread per callback that encodes and writes the records, so the training loop does not.

The training thread hands over a validation's records (``uint8`` CPU images and floats) with
:meth:`BackgroundWriter.submit` and goes on; the thread hands each record to each sink in order (encoding,
event framing and file writes happen there) and flushes each sink once per batch. The queue holds at most
``max_pending`` batches: a submit finds it full and waits, it never drops. A sink's failure is kept for
:meth:`BackgroundWriter.take_errors` and the thread goes on with the next record.

The thread never touches a model, a random generator or a device: it sees only what the records hold.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from ..core.checks import check_int
from .base import ImageRecord, Record, Sink

__all__ = ["BackgroundWriter"]


@dataclass(frozen=True)
class _Batch:
    records: list[Record]
    sinks: list[Sink]


class BackgroundWriter:
    """Write records to sinks in one background thread, in the order they were submitted.

    Args:
        sinks: where every submitted batch goes, unless :meth:`submit` names others.
        max_pending: batches (validations) that may wait in the queue besides the one being written; a
            further :meth:`submit` waits for room, so memory stays bounded and nothing is dropped.
        name: the thread's name.
    """

    def __init__(
        self, sinks: Sequence[Sink], max_pending: int = 2, name: str = "cam_callback-writer"
    ) -> None:
        self.sinks = list(sinks)
        size = check_int("max_pending", max_pending, minimum=1)
        self._queue: queue.Queue[_Batch | None] = queue.Queue(size)
        self._name = name
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._errors: list[Exception] = []
        self._closed = False

    def submit(self, records: Iterable[Record], sinks: Sequence[Sink] | None = None) -> None:
        """Queue one batch of records for ``sinks`` (default: the writer's); wait while the queue is full.

        Raises:
            RuntimeError: the writer was closed.
        """
        if self._closed:
            raise RuntimeError("the writer is closed; make a new BackgroundWriter")
        batch = _Batch(list(records), list(self.sinks if sinks is None else sinks))
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name=self._name, daemon=True)
            self._thread.start()
        self._queue.put(batch)

    def drain(self) -> None:
        """Wait until every batch submitted so far is written and flushed."""
        if self._thread is not None:
            self._queue.join()

    def close(self) -> None:
        """Drain, stop the thread and close the sinks that have a ``close``; later calls do nothing."""
        if self._closed:
            return
        self._closed = True
        if self._thread is not None:
            self._queue.put(None)
            self._thread.join()
            self._thread = None
        for sink in self.sinks:
            close = getattr(sink, "close", None)
            if callable(close):
                try:
                    close()
                except Exception as error:  # noqa: BLE001 - kept for take_errors, like every sink failure
                    self._keep(error)

    def take_errors(self) -> list[Exception]:
        """The sinks' failures since the last call, oldest first (each is reported once)."""
        with self._lock:
            errors, self._errors = self._errors, []
        return errors

    @property
    def pending(self) -> int:
        """Batches submitted and not yet taken up by the thread."""
        return self._queue.qsize()

    def _keep(self, error: Exception) -> None:
        with self._lock:
            self._errors.append(error)

    def _run(self) -> None:
        while True:
            batch = self._queue.get()
            try:
                if batch is None:
                    return
                self._write(batch)
            finally:
                self._queue.task_done()

    def _write(self, batch: _Batch) -> None:
        for sink in batch.sinks:
            for record in batch.records:
                try:
                    if isinstance(record, ImageRecord):
                        sink.add_image(record.tag, record.image, record.step, record.image_format)
                    else:
                        sink.add_scalar(record.tag, record.value, record.step)
                except Exception as error:  # noqa: BLE001 - one bad record must not lose the others
                    self._keep(error)
            try:
                sink.flush()
            except Exception as error:  # noqa: BLE001
                self._keep(error)
