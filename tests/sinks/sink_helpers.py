"""What the sink tests share: a call recorder standing in for a logger, small images, a PNG decoder."""

from __future__ import annotations

from typing import Any

import cv2
import numpy as np
import torch


class Calls:
    """Records every call of the named methods as ``(name, args, kwargs)``."""

    def __init__(self, *names: str) -> None:
        self.calls: list[tuple[Any, ...]] = []
        for name in names:
            setattr(self, name, lambda *a, _name=name, **k: self.calls.append((_name, a, k)))


def two_marks() -> torch.Tensor:
    """A black 2x4 RGB image with red 200 at row 1, column 3 and blue 9 at row 0, column 0."""
    image = torch.zeros(3, 2, 4, dtype=torch.uint8)
    image[0, 1, 3] = 200
    image[2, 0, 0] = 9
    return image


def picture(seed: int, height: int = 6, width: int = 9) -> torch.Tensor:
    """A random uint8 RGB image, the same for the same seed."""
    generator = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (3, height, width), generator=generator, dtype=torch.uint8)


def decode_rgb(png_bytes: bytes) -> np.ndarray:
    """PNG or JPEG bytes decoded by OpenCV, as an RGB ``[H, W, 3]`` array."""
    bgr = cv2.imdecode(np.frombuffer(png_bytes, dtype=np.uint8), cv2.IMREAD_COLOR)
    assert bgr is not None
    return bgr[:, :, ::-1]
