"""What every sink takes, tagged ``uint8 [3, H, W]`` RGB images at integer steps, and how they are handed on.

Sinks take images only: the numbers reach the loggers through Lightning (see
:mod:`cam_callback.callback.metrics`). :func:`publish` hands a validation's :class:`ImageRecord` items to
every sink, in the background writer's thread (:mod:`~cam_callback.sinks.writer`). One module per
destination: :mod:`~cam_callback.sinks.tensorboard` (event files), :mod:`~cam_callback.sinks.wandb`,
:mod:`~cam_callback.sinks.mlflow` and :mod:`~cam_callback.sinks.files` (PNG files).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from torch import Tensor

from ..core.checks import check_int

__all__ = ["ImageRecord", "Sink", "check_step", "check_tag", "publish"]


@runtime_checkable
class Sink(Protocol):
    """Anything that can take tagged images at a step."""

    def add_image(self, tag: str, image: Tensor, step: int, image_format: str = "png") -> None:
        """Record a ``uint8 [3, H, W]`` RGB image under ``tag`` at ``step``.

        ``image_format`` (``"png"`` or ``"jpeg"``) is the encoding, where the sink stores encoded images.
        """
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


def publish(sinks: Sequence[Sink], records: Iterable[ImageRecord]) -> list[Exception]:
    """Hand every record to every sink, in order, then flush each sink once; return what failed.

    A record or flush that raises is kept in the returned list and the others still go, so one bad write
    loses only itself.
    """
    items = list(records)
    errors: list[Exception] = []
    for sink in sinks:
        for record in items:
            try:
                sink.add_image(record.tag, record.image, record.step, record.image_format)
            except Exception as error:  # noqa: BLE001 - one bad record must not lose the others
                errors.append(error)
        try:
            sink.flush()
        except Exception as error:  # noqa: BLE001
            errors.append(error)
    return errors


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
