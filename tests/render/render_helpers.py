"""Reference pixels for the render tests: OpenCV's colours, tile positions, constant maps."""

from __future__ import annotations

import cv2
import numpy as np
import torch

DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


def cv2_rgb(level: int, colormap: str = "jet") -> np.ndarray:
    """Reference colour of one grey level straight from OpenCV, as RGB uint8."""
    code = getattr(cv2, f"COLORMAP_{colormap.upper()}")
    colour: np.ndarray = cv2.applyColorMap(np.array([[level]], dtype=np.uint8), code)[0, 0, ::-1].copy()
    return colour


def tile_origin(index: int, ncols: int, h: int, w: int, pad: int) -> tuple[int, int]:
    """Top-left pixel of tile ``index`` in a row-major grid of ``ncols`` columns with ``pad`` spacing."""
    row, col = divmod(index, ncols)
    return pad + row * (h + pad), pad + col * (w + pad)


def constant_maps(levels: list[int], size: int) -> torch.Tensor:
    """[B, size, size] maps, map b constant at levels[b] / 255."""
    return torch.tensor(levels, dtype=torch.float32).div(255).view(-1, 1, 1).expand(-1, size, size).clone()
