"""The TensorBoard sink: events in the run folder of a ``SummaryWriter`` (a ``TensorBoardLogger``'s)."""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

from torch import Tensor

from ..core.checks import check_choice
from .base import check_step
from .encoding import IMAGE_FORMATS, check_image, encode_image
from .events import ChartGroup, EventFile, image_event, layout_event

__all__ = ["TensorBoardSink"]


class TensorBoardSink:
    """Log to the run folder of a ``torch.utils.tensorboard.SummaryWriter``.

    Lightning's ``TensorBoardLogger.experiment`` is such a writer. The sink writes its own event file
    (:class:`~cam_callback.sinks.events.EventFile`, native CRC-32C) into the writer's folder,
    ``writer.get_logdir()``, where TensorBoard reads it as part of the same run; the writer itself is
    neither written to nor closed. Each image is encoded once, with OpenCV. A writer without
    ``get_logdir`` gets the images through its own ``add_image`` and ``flush``.

    Args:
        writer: the ``SummaryWriter`` (anything with its ``add_image`` and ``flush``).
    """

    def __init__(self, writer: Any) -> None:
        for method in ("add_image", "flush"):
            if not callable(getattr(writer, method, None)):
                raise TypeError(
                    f"`writer` must be a SummaryWriter (with `{method}`), got {type(writer).__name__}"
                )
        self.writer = writer
        get_logdir = getattr(writer, "get_logdir", None)
        self.events = EventFile(get_logdir()) if callable(get_logdir) else None

    def add_image(self, tag: str, image: Tensor, step: int, image_format: str = "png") -> None:
        """Log a ``uint8 [3, H, W]`` RGB image at ``step``, encoded as ``image_format``.

        ``"png"`` is lossless (OpenCV, fastest compression level); ``"jpeg"`` is quality
        :data:`cam_callback.sinks.encoding.JPEG_QUALITY`, far fewer bytes for detailed images. TensorBoard
        shows both.
        """
        step = check_step(step)
        image = check_image(image)
        image_format = check_choice("image_format", image_format, IMAGE_FORMATS)
        if self.events is None:
            self.writer.add_image(tag, image, global_step=step, dataformats="CHW")
            return
        encoded = encode_image(image, image_format)
        height, width = int(image.shape[1]), int(image.shape[2])
        self.events.add(image_event(tag, encoded, height, width, step, time.time()))

    def add_layout(self, groups: Sequence[ChartGroup]) -> None:
        """Write a Custom Scalars layout of ``groups`` (TensorBoard shows a run's latest); flushed at once."""
        if self.events is None:
            layout = {g.title: {title: ["Multiline", list(tags)] for title, tags in g.charts} for g in groups}
            self.writer.add_custom_scalars(layout)
        else:
            self.events.add(layout_event(groups, time.time()))
        self.flush()

    def unwritten(self) -> list[tuple[str, int]]:
        """``(tags, step)`` of the images kept from failed writes of the event file."""
        return self.events.unwritten() if self.events is not None else []

    def flush(self) -> None:
        """Append the pending events to the event file (or flush the writer without a folder)."""
        if self.events is None:
            self.writer.flush()
            return
        self.events.flush()
