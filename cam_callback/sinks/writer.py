"""One background thread per callback that runs the host work of each validation, so training does not.

The training thread hands over a job with :meth:`BackgroundWriter.submit` and goes on; the thread runs the
jobs in order. A job is a function that writes (for example :func:`~cam_callback.sinks.base.publish` of a
validation's records to its sinks: encoding, event framing and file writes happen there) and returns the
failures it met; a job that raises is kept as one failure. The queue holds at most ``max_pending`` jobs: a
submit finds it full and waits, it never drops. The failures wait for :meth:`BackgroundWriter.take_errors`.

The thread never touches a model, a random generator or a device: a job holds only CPU tensors (``uint8``
images, or small float maps it draws images from), numbers and the sinks.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Iterable

from ..core.checks import check_int

__all__ = ["BackgroundWriter", "Job"]

Job = Callable[[], Iterable[Exception]]
"""Writes something and returns the failures it met (an empty list when all went well)."""


class BackgroundWriter:
    """Run jobs in one background thread, in the order they were submitted.

    Args:
        max_pending: jobs (validations) that may wait in the queue besides the one running; a further
            :meth:`submit` waits for room, so memory stays bounded and nothing is dropped.
        name: the thread's name.
    """

    def __init__(self, max_pending: int = 2, name: str = "cam_callback-writer") -> None:
        size = check_int("max_pending", max_pending, minimum=1)
        self._queue: queue.Queue[Job | None] = queue.Queue(size)
        self._name = name
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._errors: list[Exception] = []
        self._closed = False

    def submit(self, job: Job) -> None:
        """Queue ``job``; wait while the queue is full.

        Raises:
            RuntimeError: the writer was closed.
        """
        if self._closed:
            raise RuntimeError("the writer is closed; make a new BackgroundWriter")
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name=self._name, daemon=True)
            self._thread.start()
        self._queue.put(job)

    def drain(self) -> None:
        """Wait until every job submitted so far has run."""
        if self._thread is not None:
            self._queue.join()

    def close(self) -> None:
        """Run what is queued, then stop the thread; later calls do nothing."""
        if self._closed:
            return
        self._closed = True
        if self._thread is not None:
            self._queue.put(None)
            self._thread.join()
            self._thread = None

    def take_errors(self) -> list[Exception]:
        """The jobs' failures since the last call, oldest first (each is reported once)."""
        with self._lock:
            errors, self._errors = self._errors, []
        return errors

    @property
    def pending(self) -> int:
        """Jobs submitted and not yet taken up by the thread."""
        return self._queue.qsize()

    def _run(self) -> None:
        while True:
            job = self._queue.get()
            try:
                if job is None:
                    return
                try:
                    failures = list(job())
                except Exception as error:  # noqa: BLE001 - kept for take_errors, like a sink's failure
                    failures = [error]
                if failures:
                    with self._lock:
                        self._errors.extend(failures)
            finally:
                self._queue.task_done()
