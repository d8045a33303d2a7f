"""TensorBoard event files written with a native CRC-32C: the record framing and one appending file.

An event file is a sequence of records, each ``uint64 length | uint32 masked CRC of the length | data |
uint32 masked CRC of the data`` (little-endian), the data a serialised ``Event`` protobuf; the first event
names the file version (``brain.Event:2``). TensorBoard's own writer computes the CRC-32C in pure Python
(a few MB/s); :func:`masked_crc32c` uses the ``google-crc32c`` extension instead, with the same bytes.

TensorBoard reads every ``*tfevents*`` file of a run folder, so an :class:`EventFile` beside the
``SummaryWriter``'s file in the same folder adds its tags to that run. :func:`layout_event` holds a layout
of TensorBoard's Custom Scalars dashboard (the plugin's ``Layout`` proto, as its own summary writes it).
"""

from __future__ import annotations

import itertools
import os
import socket
import struct
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import google_crc32c
from tensorboard.compat.proto.event_pb2 import Event
from tensorboard.compat.proto.summary_pb2 import Summary, SummaryMetadata
from tensorboard.compat.proto.tensor_pb2 import TensorProto
from tensorboard.compat.proto.tensor_shape_pb2 import TensorShapeProto
from tensorboard.compat.proto.types_pb2 import DT_STRING
from tensorboard.plugins.custom_scalar import layout_pb2
from tensorboard.plugins.custom_scalar import metadata as custom_scalars

from ..core.checks import check_int
from .atomic import WriteFailure, append_at, out_of_space

__all__ = ["ChartGroup", "EventFile", "frame_record", "image_event", "layout_event", "masked_crc32c"]

_MASK_DELTA = 0xA282EAD8
_FILE_VERSION = "brain.Event:2"
_counter = itertools.count()


def masked_crc32c(data: bytes) -> int:
    """The CRC-32C (Castagnoli) of ``data``, rotated right by 15 bits plus ``0xa282ead8`` (mod 2^32)."""
    crc = int(google_crc32c.value(data))
    return (((crc >> 15) | (crc << 17)) + _MASK_DELTA) & 0xFFFFFFFF


def frame_record(data: bytes) -> bytes:
    """``data`` framed as one TFRecord: length, masked CRC of the length, data, masked CRC of the data."""
    header = struct.pack("<Q", len(data))
    return b"".join(
        (header, struct.pack("<I", masked_crc32c(header)), data, struct.pack("<I", masked_crc32c(data)))
    )


def image_event(tag: str, encoded: bytes, height: int, width: int, step: int, wall_time: float) -> Event:
    """An ``Event`` holding one encoded RGB image (PNG or JPEG bytes) under ``tag`` at ``step``."""
    picture = Summary.Image(height=height, width=width, colorspace=3, encoded_image_string=encoded)
    summary = Summary(value=[Summary.Value(tag=tag, image=picture)])
    return Event(wall_time=wall_time, step=step, summary=summary)


@dataclass(frozen=True)
class ChartGroup:
    """One category of the Custom Scalars dashboard.

    Attributes:
        title: the category's title.
        charts: ``(title, regexes)`` per chart: one line per scalar tag that a regular expression matches
            from its start (``re.match``).
    """

    title: str
    charts: tuple[tuple[str, tuple[str, ...]], ...]


def layout_event(groups: Sequence[ChartGroup], wall_time: float) -> Event:
    """An ``Event`` holding the Custom Scalars layout of ``groups``, one multi-line chart per chart."""
    layout = layout_pb2.Layout(
        category=[
            layout_pb2.Category(
                title=group.title,
                chart=[
                    layout_pb2.Chart(title=title, multiline=layout_pb2.MultilineChartContent(tag=list(tags)))
                    for title, tags in group.charts
                ],
            )
            for group in groups
        ]
    )
    tensor = TensorProto(
        dtype=DT_STRING, tensor_shape=TensorShapeProto(), string_val=[layout.SerializeToString()]
    )
    plugin = SummaryMetadata.PluginData(plugin_name=custom_scalars.PLUGIN_NAME)
    value = Summary.Value(
        tag=custom_scalars.CONFIG_SUMMARY_TAG, metadata=SummaryMetadata(plugin_data=plugin), tensor=tensor
    )
    return Event(wall_time=wall_time, summary=Summary(value=[value]))


class EventFile:
    """One TensorBoard event file in ``directory``, appended to at each :meth:`flush`, all or nothing.

    The file (``events.out.tfevents.<time>.<host>.<pid>.<n>.cam_callback``) is made at the first flush
    that has something to write, starting with the file-version event. Between flushes the framed records
    wait in memory; no file handle stays open.

    A flush writes at the file's known good end and, when the write fails (a full disk), cuts the file
    back there, so the file never holds half a record and TensorBoard reads every later one; where the
    file cannot be cut back, the next flush starts a new file. The failed flush's records are kept and
    written first at the next flush; at most ``max_backlog`` failed flushes are kept (the oldest are
    dropped), so memory stays bounded while nothing can be written. The failure is raised as a
    :class:`~cam_callback.sinks.atomic.WriteFailure` naming what was lost and what is kept.

    Args:
        directory: the run folder (made when needed).
        max_backlog: how many failed flushes' records wait for the next one (at least 1).
    """

    def __init__(self, directory: str | os.PathLike[str], max_backlog: int = 1) -> None:
        self.directory = Path(directory)
        self.max_backlog = check_int("max_backlog", max_backlog, minimum=1)
        self.path: Path | None = None
        self._size = 0  # the end of what the file holds for sure
        self._pending: list[_Record] = []
        self._backlog: list[list[_Record]] = []  # failed flushes, oldest first

    @property
    def waiting(self) -> int:
        """Records not yet in the file: added since the last flush, and kept from failed ones."""
        return len(self._pending) + sum(len(batch) for batch in self._backlog)

    def unwritten(self) -> list[tuple[str, int]]:
        """``(tags, step)`` of the records kept from failed flushes, not yet in the file."""
        return [record.key for batch in self._backlog for record in batch]

    def add(self, event: Event) -> None:
        """Frame ``event`` for the next :meth:`flush`."""
        tags = ", ".join(value.tag for value in event.summary.value) or "file_version"
        self._pending.append(_Record(tags, int(event.step), frame_record(event.SerializeToString())))

    def flush(self) -> None:
        """Write everything kept and added since the last flush at the end of the file, or none of it.

        Raises:
            WriteFailure: the disk is full: nothing was written; the records of the newest ``max_backlog``
                failed flushes wait for the next flush, older ones are dropped (both are named).
            OSError: any other failure, with the same backlog kept.
        """
        if self._pending:
            self._backlog.append(self._pending)
            self._pending = []
        if not self._backlog:
            return
        if self.path is None:
            self.directory.mkdir(parents=True, exist_ok=True)
            name = (
                f"events.out.tfevents.{int(time.time()):010d}.{socket.gethostname()}.{os.getpid()}"
                f".{next(_counter)}.cam_callback"
            )
            self.path, self._size = self.directory / name, 0
        data = b"".join(record.data for batch in self._backlog for record in batch)
        if self._size == 0:
            version = Event(wall_time=time.time(), file_version=_FILE_VERSION)
            data = frame_record(version.SerializeToString()) + data
        try:
            self._size = append_at(self.path, data, self._size)
        except OSError as error:
            self._after_failure()
            dropped = self._backlog[: -self.max_backlog]
            self._backlog = self._backlog[-self.max_backlog :]
            if not out_of_space(error):
                raise
            raise WriteFailure(
                str(self.path), error, [r.key for batch in dropped for r in batch],
                [r.key for batch in self._backlog for r in batch],
            ) from error
        self._backlog.clear()

    def _after_failure(self) -> None:
        """Start a new file at the next flush when this one could not be cut back to its good end."""
        try:
            clean = self.path is not None and self.path.stat().st_size == self._size
        except OSError:
            clean = False
        if not clean:
            self.path, self._size = None, 0


@dataclass(frozen=True)
class _Record:
    """One framed event, with its tags and step to say what a failed write lost."""

    tags: str
    step: int
    data: bytes

    @property
    def key(self) -> tuple[str, int]:
        return self.tags, self.step
