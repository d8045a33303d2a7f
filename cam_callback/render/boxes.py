"""Box outlines drawn into image tiles (the ground truth, or the detection a map explains)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

__all__ = ["BOX_COLORS", "draw_boxes"]

BOX_COLORS: tuple[tuple[int, int, int], ...] = ((0, 255, 0), (255, 255, 0), (0, 255, 255), (255, 0, 255))
"""Outline colours of successive box sets: the ground truth (green), then the explained detection (yellow)."""


def draw_boxes(
    tiles: Tensor, boxes: Tensor, color: Sequence[int] = (0, 255, 0), thickness: int | None = None
) -> Tensor:
    """Outline one box per tile: ``tiles`` uint8 ``[B, 3, H, W]``, ``boxes`` ``[B, 4]`` (x1, y1, x2, y2).

    Returns a copy. A box with no area (``x2 <= x1`` or ``y2 <= y1``, e.g. a sample without objects) or a
    non-finite one is not drawn. The line is ``thickness`` pixels wide inside the box (default: about 1 %
    of the tile's side, at least 1).
    """
    if tiles.dim() != 4 or boxes.shape != (tiles.shape[0], 4):
        raise ValueError(
            f"draw_boxes: tiles {tuple(tiles.shape)} and boxes {tuple(boxes.shape)} do not match"
        )
    count, _, height, width = tiles.shape
    line = thickness if thickness is not None else max(1, round(0.01 * max(height, width)))
    ys = torch.arange(height, device=tiles.device).view(1, -1, 1)
    xs = torch.arange(width, device=tiles.device).view(1, 1, -1)
    b = boxes.to(tiles.device).float()
    valid = torch.isfinite(b).all(dim=1) & (b[:, 2] > b[:, 0]) & (b[:, 3] > b[:, 1])
    b = torch.nan_to_num(b)
    x1, y1, x2, y2 = (b[:, i].round().view(-1, 1, 1) for i in range(4))
    inside = (xs >= x1) & (xs < x2) & (ys >= y1) & (ys < y2)
    core = (xs >= x1 + line) & (xs < x2 - line) & (ys >= y1 + line) & (ys < y2 - line)
    outline = inside & ~core & valid.view(-1, 1, 1)
    out = tiles.clone()
    paint = torch.tensor(list(color), dtype=tiles.dtype, device=tiles.device).view(1, 3, 1, 1)
    return torch.where(outline[:, None], paint.expand(count, 3, height, width), out)
