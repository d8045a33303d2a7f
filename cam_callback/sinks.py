"""Where rendered images and scalars go: TensorBoard, or PNG files and a CSV on disk.

A sink takes ``uint8 [3, H, W]`` RGB images (what :mod:`cam_callback.render` returns) and float scalars,
each under a ``/``-separated tag and an integer step.

Example:
    >>> import tempfile, torch
    >>> sink = PngSink(tempfile.mkdtemp())
    >>> sink.add_image("cam/overlay", torch.zeros(3, 8, 8, dtype=torch.uint8), step=3)
    >>> sink.add_scalar("cam/mean", 0.25, step=3)
    >>> sink.flush()
"""

from __future__ import annotations

import csv
import os
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import cv2
import numpy as np
import torch
from torch import Tensor

__all__ = ["IMAGE_FORMATS", "JPEG_QUALITY", "PngSink", "Sink", "TensorBoardSink"]

IMAGE_FORMATS = ("png", "jpeg")
"""How a sink may encode an image: lossless PNG, or JPEG (far fewer bytes for detailed images)."""

JPEG_QUALITY = 90


@runtime_checkable
class Sink(Protocol):
    """Anything that can take tagged images and scalars at a step."""

    def add_image(self, tag: str, image: Tensor, step: int, image_format: str = "png") -> None:
        """Record a ``uint8 [3, H, W]`` RGB image under ``tag`` at ``step``, encoded as ``image_format``
        where the sink stores encoded images."""
        ...

    def add_scalar(self, tag: str, value: float, step: int) -> None:
        """Record a scalar under ``tag`` at ``step``."""
        ...

    def flush(self) -> None:
        """Push anything buffered to its destination."""
        ...


def _check_image(image: Tensor) -> Tensor:
    """Validate a uint8 ``[3, H, W]`` image and return it on the CPU."""
    if not isinstance(image, Tensor):
        raise TypeError(f"`image` must be a torch.Tensor, got {type(image).__name__}")
    if image.dtype != torch.uint8:
        raise TypeError(f"`image` must be uint8 (see cam_callback.render), got {image.dtype}")
    if image.ndim != 3 or image.shape[0] != 3:
        raise ValueError(f"`image` must be [3, H, W] RGB, got shape {tuple(image.shape)}")
    return image.detach().cpu()


def _check_format(image_format: str) -> str:
    if image_format not in IMAGE_FORMATS:
        raise ValueError(f"`image_format` must be one of {IMAGE_FORMATS}, got {image_format!r}")
    return image_format


def encode_jpeg(image: Tensor, quality: int = JPEG_QUALITY) -> bytes:
    """JPEG bytes of a ``uint8 [3, H, W]`` RGB image."""
    bgr = np.ascontiguousarray(_check_image(image).permute(1, 2, 0).numpy()[:, :, ::-1])
    ok, encoded = cv2.imencode(".jpg", bgr, [cv2.IMWRITE_JPEG_QUALITY, int(quality)])
    if not ok:
        raise OSError("OpenCV could not encode the image as JPEG")
    return encoded.tobytes()


def _check_step(step: int) -> int:
    if isinstance(step, bool) or not isinstance(step, int):
        raise TypeError(f"`step` must be an int, got {type(step).__name__}")
    if step < 0:
        raise ValueError(f"`step` must be non-negative, got {step}")
    return step


def _check_tag(tag: str) -> list[str]:
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

        ``"png"`` goes through ``writer.add_image`` (lossless). ``"jpeg"`` (quality :data:`JPEG_QUALITY`)
        writes the image summary itself: TensorBoard's event writer checksums every byte in pure Python
        (a few MB/s), so a 224x224 grid of 16 noise-like images costs several hundred milliseconds as
        PNG and a fifth of that as JPEG. TensorBoard shows both. A writer without a file writer gets PNG.
        """
        step = _check_step(step)
        image = _check_image(image)
        file_writer = getattr(self.writer, "_get_file_writer", None)
        if _check_format(image_format) == "png" or file_writer is None:
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
        self.writer.add_scalar(tag, float(value), global_step=_check_step(step))

    def flush(self) -> None:
        """Flush the writer's pending events to disk."""
        self.writer.flush()


class PngSink:
    """Write images as PNG files and scalars to a CSV, under one folder.

    Layout, folders made when first needed:

    * image ``tag`` at ``step``: ``<directory>/<tag parts>/step_<step:08d>.png``, where the tag's ``/``
      separate folders (``"cam/overlay"`` at step 7 -> ``cam/overlay/step_00000007.png``);
    * scalars: appended to ``<directory>/scalars.csv`` with columns ``tag,step,value`` (header written once).

    Args:
        directory: the output folder.
    """

    SCALARS_FILE = "scalars.csv"

    def __init__(self, directory: str | os.PathLike[str]) -> None:
        self.directory = Path(directory)

    def image_path(self, tag: str, step: int) -> Path:
        """The file that :meth:`add_image` writes for ``tag`` at ``step``."""
        return self.directory.joinpath(*_check_tag(tag), f"step_{_check_step(step):08d}.png")

    def add_image(self, tag: str, image: Tensor, step: int, image_format: str = "png") -> None:
        """Write a ``uint8 [3, H, W]`` RGB image as a PNG at :meth:`image_path` (files on disk are always
        lossless PNG; ``image_format`` is checked, then ignored).

        Raises:
            OSError: the PNG could not be encoded or written.
        """
        _check_format(image_format)
        path = self.image_path(tag, step)
        pixels = _check_image(image).permute(1, 2, 0).numpy()
        bgr = np.ascontiguousarray(pixels[:, :, ::-1])
        ok, encoded = cv2.imencode(".png", bgr)
        if not ok:
            raise OSError(f"OpenCV could not encode the image for {tag!r} as PNG")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(encoded.tobytes())

    def add_scalar(self, tag: str, value: float, step: int) -> None:
        """Append a ``tag,step,value`` row to ``<directory>/scalars.csv``."""
        if not isinstance(tag, str):
            raise TypeError(f"`tag` must be a str, got {type(tag).__name__}")
        row = [tag, _check_step(step), repr(float(value))]
        path = self.directory / self.SCALARS_FILE
        self.directory.mkdir(parents=True, exist_ok=True)
        new = not path.exists() or path.stat().st_size == 0
        with path.open("a", newline="", encoding="utf-8") as handle:
            writer = csv.writer(handle)
            if new:
                writer.writerow(["tag", "step", "value"])
            writer.writerow(row)

    def flush(self) -> None:
        """Nothing to do: every call writes through to disk."""
