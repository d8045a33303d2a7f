"""Writes that are all or nothing: a whole file replaced, or bytes appended at a known offset.

A disk that fills up halfway through a write must not leave half a file or half a record behind.
:func:`replace_file` writes a temporary file beside the target and renames it over the target
(``os.replace``), so a reader sees the old file or the new one, never an empty or cut one.
:func:`append_at` writes at the file's known good end and cuts the file back there when the write fails.
A failure that loses or defers records is raised as a :class:`WriteFailure`, which says which tags and
steps.
"""

from __future__ import annotations

import contextlib
import errno
import os
from collections.abc import Sequence
from pathlib import Path

__all__ = ["WriteFailure", "append_at", "describe_records", "out_of_space", "replace_file"]

_write = os.write
"""Every byte these writes put on disk goes through this one call (tests replace it to fill the disk)."""

_SHOWN_STEPS = 4


def out_of_space(error: OSError) -> bool:
    """Whether ``error`` says the disk (or the user's quota) is full: a write may work again later."""
    return error.errno in (errno.ENOSPC, errno.EDQUOT)


def write_all(fd: int, data: bytes) -> None:
    """Write all of ``data`` to ``fd``, continuing after short writes."""
    view = memoryview(data)
    while view:
        written = _write(fd, view)
        view = view[written:]


def replace_file(path: str | os.PathLike[str], data: bytes) -> None:
    """Make ``path`` hold exactly ``data``: written to a temporary file beside it, then renamed over it.

    On failure the temporary file is removed and ``path`` is as it was (missing, or its old bytes).

    Raises:
        OSError: the folder, the temporary file or the rename failed.
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    temporary = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        try:
            write_all(fd, data)
        finally:
            os.close(fd)
        os.replace(temporary, target)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        raise


def append_at(path: str | os.PathLike[str], data: bytes, offset: int) -> int:
    """Write ``data`` at ``offset`` of ``path`` (made when missing) and return the new end, ``offset + len``.

    ``offset`` is the end of what the file holds for sure. When the write fails, the file is cut back to
    ``offset`` (bytes after it, from a half write, are removed) and the error raised.

    Raises:
        OSError: the write failed (the file is cut back to ``offset`` where that was possible).
    """
    fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o644)
    try:
        os.lseek(fd, offset, os.SEEK_SET)
        try:
            write_all(fd, data)
        except BaseException:
            with contextlib.suppress(OSError):
                os.ftruncate(fd, offset)
            raise
    finally:
        os.close(fd)
    return offset + len(data)


def describe_records(records: Sequence[tuple[str, int]]) -> str:
    """``records`` (tag, step) in a few words: the steps, and the tags of the first steps."""
    by_step: dict[int, list[str]] = {}
    for tag, step in records:
        by_step.setdefault(step, []).append(tag)
    parts = [f"step {step} ({', '.join(dict.fromkeys(tags))})" for step, tags in by_step.items()]
    shown = parts[:_SHOWN_STEPS]
    if len(parts) > _SHOWN_STEPS:
        shown.append(f"and {len(parts) - _SHOWN_STEPS} more steps")
    return "; ".join(shown) if shown else "nothing"


class WriteFailure(OSError):
    """A write that failed for want of space, with what it cost: records lost, and records kept for later.

    Attributes:
        where: the file or destination.
        error: the underlying ``OSError``.
        lost: ``(tag, step)`` of the records given up.
        kept: ``(tag, step)`` of the records kept for the next write (a bounded backlog).
    """

    def __init__(
        self, where: str, error: OSError, lost: Sequence[tuple[str, int]],
        kept: Sequence[tuple[str, int]] = (),
    ) -> None:
        super().__init__(error.errno, error.strerror or str(error))
        self.where = where
        self.error = error
        self.lost = list(lost)
        self.kept = list(kept)

    def __str__(self) -> str:
        text = f"could not write {self.where} ({self.error})"
        if self.lost:
            text += f"; lost: {describe_records(self.lost)}"
        if self.kept:
            text += f"; kept to write at the next validation: {describe_records(self.kept)}"
        return text
