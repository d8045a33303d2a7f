"""What every sink takes: tagged ``uint8 [3, H, W]`` RGB images and float scalars at integer steps.

The callback's publishing step turns a validation into :class:`ImageRecord` and :class:`ScalarRecord`
items; :func:`publish` hands each to every sink. One module per destination:
:mod:`~cam_callback.sinks.tensorboard`, :mod:`~cam_callback.sinks.files`.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from torch import Tensor

from ..core.checks import check_int

__all__ = ["ImageRecord", "Record", "ScalarRecord", "Sink", "check_step", "check_tag", "publish"]


@runtime_checkable
class Sink(Protocol):
    """Anything that can take tagged images and scalars at a step."""

    def add_image(self, tag: str, image: Tensor, step: int, image_format: str = "png") -> None:
        """Record a ``uint8 [3, H, W]`` RGB image under ``tag`` at ``step``.

        ``image_format`` (``"png"`` or ``"jpeg"``) is the encoding, where the sink stores encoded images.
        """
        ...

    def add_scalar(self, tag: str, value: float, step: int) -> None:
        """Record a scalar under ``tag`` at ``step``."""
        ...

    def flush(self) -> None:
        """Push anything buffered to its destination."""
        ...


@dataclass(frozen=True)
class ImageRecord:
    """One image to log: ``uint8 [3, H, W]`` RGB under ``tag`` at ``step``, encoded as ``image_format``."""

    tag: str
    image: Tensor
    step: int
    image_format: str = "png"


@dataclass(frozen=True)
class ScalarRecord:
    """One number to log under ``tag`` at ``step``."""

    tag: str
    value: float
    step: int


Record = ImageRecord | ScalarRecord


def publish(sinks: Sequence[Sink], records: Iterable[Record]) -> None:
    """Hand every record to every sink, in order, then flush each sink once."""
    items = list(records)
    for sink in sinks:
        for record in items:
            if isinstance(record, ImageRecord):
                sink.add_image(record.tag, record.image, record.step, record.image_format)
            else:
                sink.add_scalar(record.tag, record.value, record.step)
        sink.flush()


def check_step(step: int) -> int:
    """``step`` if it is a non-negative int."""
    return check_int("step", step, minimum=0)


def check_tag(tag: str) -> list[str]:
    """Split a tag into path parts, refusing ones that could leave the output folder."""
    if not isinstance(tag, str):
        raise TypeError(f"`tag` must be a str, got {type(tag).__name__}")
    parts = [part for part in tag.split("/") if part]
    if not parts:
        raise ValueError(f"`tag` must name something, got {tag!r}")
    for part in parts:
        if part in (".", "..") or "\\" in part or "\0" in part:
            raise ValueError(f"`tag`: the part {part!r} of {tag!r} is not allowed in a file path")
    return parts
