"""The TensorBoard sink: a ``SummaryWriter`` (what Lightning's ``TensorBoardLogger.experiment`` is)."""

from __future__ import annotations

from typing import Any

from torch import Tensor

from ..core.checks import check_choice
from ..render.encoding import IMAGE_FORMATS, check_image, encode_jpeg
from .base import check_step

__all__ = ["TensorBoardSink"]


class TensorBoardSink:
    """Log to a ``torch.utils.tensorboard.SummaryWriter``.

    Lightning's ``TensorBoardLogger.experiment`` is such a writer. The sink does not own it: ``flush``
    flushes it, nothing here closes it.

    Args:
        writer: the ``SummaryWriter`` (anything with its ``add_image``/``add_scalar``/``flush``).
    """

    def __init__(self, writer: Any) -> None:
        for method in ("add_image", "add_scalar", "flush"):
            if not callable(getattr(writer, method, None)):
                raise TypeError(
                    f"`writer` must be a SummaryWriter (with `{method}`), got {type(writer).__name__}"
                )
        self.writer = writer

    def add_image(self, tag: str, image: Tensor, step: int, image_format: str = "png") -> None:
        """Log a ``uint8 [3, H, W]`` RGB image at ``global_step=step``.

        ``"png"`` goes through ``writer.add_image`` (lossless). ``"jpeg"``
        (quality :data:`cam_callback.render.JPEG_QUALITY`) writes the image summary itself: TensorBoard's
        event writer checksums every byte in pure Python
        (a few MB/s), so a 224x224 grid of 16 noise-like images costs several hundred milliseconds as
        PNG and a fifth of that as JPEG. TensorBoard shows both. A writer without a file writer gets PNG.
        """
        step = check_step(step)
        image = check_image(image)
        file_writer = getattr(self.writer, "_get_file_writer", None)
        if check_choice("image_format", image_format, IMAGE_FORMATS) == "png" or file_writer is None:
            self.writer.add_image(tag, image, global_step=step, dataformats="CHW")
            return
        from tensorboard.compat.proto.summary_pb2 import Summary

        picture = Summary.Image(
            height=int(image.shape[1]), width=int(image.shape[2]), colorspace=3,
            encoded_image_string=encode_jpeg(image),
        )
        file_writer().add_summary(Summary(value=[Summary.Value(tag=tag, image=picture)]), step)

    def add_scalar(self, tag: str, value: float, step: int) -> None:
        """Log ``float(value)`` under ``tag`` at ``global_step=step``."""
        self.writer.add_scalar(tag, float(value), global_step=check_step(step))

    def flush(self) -> None:
        """Flush the writer's pending events to disk."""
        self.writer.flush()
