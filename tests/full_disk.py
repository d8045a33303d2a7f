"""A disk that fills up: injected into every write of :mod:`cam_callback.sinks.atomic`, or a small tmpfs."""

from __future__ import annotations

import errno
import os
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from cam_callback.sinks import atomic


class FullDisk:
    """Stands in for ``os.write`` in :mod:`cam_callback.sinks.atomic` (every write of the sinks goes there).

    While ``full``, a write first puts half of its bytes on disk (a short write), and the call for the rest
    raises ``ENOSPC``, as a disk that fills up halfway does. With ``failures_left`` set, the disk is full
    for that many failed writes, then has room again.
    """

    def __init__(self, monkeypatch: pytest.MonkeyPatch, *, full: bool = False) -> None:
        self.full = full
        self.failures = 0
        self.failures_left: int | None = None
        self._half_written = False
        monkeypatch.setattr(atomic, "_write", self.write)

    def write(self, fd: int, data: memoryview) -> int:
        if self.failures_left is not None:
            self.full = self.failures_left > 0
        if not self.full:
            return os.write(fd, data)
        if len(data) > 1 and not self._half_written:
            self._half_written = True
            return os.write(fd, bytes(data[: len(data) // 2]))
        self._half_written = False
        self.failures += 1
        if self.failures_left is not None:
            self.failures_left -= 1
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


@contextmanager
def small_tmpfs(path: Path, size: str) -> Iterator[Path]:
    """A real tmpfs of ``size`` (``mount -t tmpfs -o size=...``) at ``path``, unmounted afterwards.

    Skips the test, saying why, where this machine does not let the test mount one (it needs root).
    """
    path.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)], capture_output=True, text=True
    )
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here (needs root): {done.stderr.strip() or done.returncode}")
    try:
        yield path
    finally:
        subprocess.run(["umount", str(path)], check=True)


def fill(folder: Path, leave: int) -> Path:
    """Fill the file system of ``folder`` with one file until about ``leave`` bytes are free; return it."""
    filler = folder / "filler.bin"
    stats = os.statvfs(folder)
    free = stats.f_bavail * stats.f_frsize
    filler.write_bytes(b"\0" * max(0, free - leave))
    return filler
