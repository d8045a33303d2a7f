"""Encoding ``uint8 [3, H, W]`` RGB images (what :mod:`cam_callback.render` draws) to PNG or JPEG bytes."""

from __future__ import annotations

import cv2
import numpy as np
import torch
from torch import Tensor

from ..core.checks import check_choice

__all__ = [
    "IMAGE_FORMATS", "JPEG_QUALITY", "PNG_COMPRESSION", "check_image", "encode_image", "encode_jpeg",
    "encode_png",
]

IMAGE_FORMATS = ("png", "jpeg")
"""How an image may be encoded: lossless PNG, or JPEG (far fewer bytes for detailed images)."""

JPEG_QUALITY = 90

PNG_COMPRESSION = 1
"""zlib level of PNGs: 1 is the fastest; the maps' smooth grids compress well even so."""


def check_image(image: Tensor) -> Tensor:
    """Validate a uint8 ``[3, H, W]`` RGB image and return it on the CPU."""
    if not isinstance(image, Tensor):
        raise TypeError(f"`image` must be a torch.Tensor, got {type(image).__name__}")
    if image.dtype != torch.uint8:
        raise TypeError(f"`image` must be uint8 (see cam_callback.render), got {image.dtype}")
    if image.ndim != 3 or image.shape[0] != 3:
        raise ValueError(f"`image` must be [3, H, W] RGB, got shape {tuple(image.shape)}")
    return image.detach().cpu()


def _bgr(image: Tensor) -> np.ndarray:
    return np.ascontiguousarray(check_image(image).permute(1, 2, 0).numpy()[:, :, ::-1])


def encode_jpeg(image: Tensor, quality: int = JPEG_QUALITY) -> bytes:
    """JPEG bytes of a ``uint8 [3, H, W]`` RGB image."""
    ok, encoded = cv2.imencode(".jpg", _bgr(image), [cv2.IMWRITE_JPEG_QUALITY, int(quality)])
    if not ok:
        raise OSError("OpenCV could not encode the image as JPEG")
    return encoded.tobytes()


def encode_png(image: Tensor, compression: int = PNG_COMPRESSION) -> bytes:
    """Lossless PNG bytes of a ``uint8 [3, H, W]`` RGB image, zlib level ``compression`` (0-9)."""
    ok, encoded = cv2.imencode(".png", _bgr(image), [cv2.IMWRITE_PNG_COMPRESSION, int(compression)])
    if not ok:
        raise OSError("OpenCV could not encode the image as PNG")
    return encoded.tobytes()


def encode_image(image: Tensor, image_format: str) -> bytes:
    """``image`` encoded as ``image_format`` (one of :data:`IMAGE_FORMATS`)."""
    if check_choice("image_format", image_format, IMAGE_FORMATS) == "jpeg":
        return encode_jpeg(image)
    return encode_png(image)
