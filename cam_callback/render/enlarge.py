"""Small inputs shown enlarged: a whole-number factor that brings a tile's shorter side to a minimum size.

Display only: the maps and numbers are computed at the input's size before anything here runs. Images are
enlarged by repeating each pixel (what was computed, only bigger); maps bilinearly, as they are drawn
over an image of any size anyway.
"""

from __future__ import annotations

import math

from torch import Tensor

from ..core.maps import upsample_maps

__all__ = ["MAX_GRID_PIXELS", "display_factor", "enlarge_images", "enlarge_maps"]

MAX_GRID_PIXELS = 1 << 20
"""Enlarging stops where a grid's tiles would hold more pixels than this (a 1024 x 1024 picture): drawing
and encoding cost grows with the pixels, so many small images are enlarged less (or not at all)."""


def display_factor(height: int, width: int, min_side: int, count: int = 1) -> int:
    """The smallest whole factor that makes ``min(height, width) * factor >= min_side`` (1 for 0 or less).

    With ``count`` tiles, the factor is capped so that ``count * height * width * factor**2`` stays within
    :data:`MAX_GRID_PIXELS` (never below 1).
    """
    shorter = max(1, min(int(height), int(width)))
    wanted = max(1, math.ceil(min_side / shorter)) if min_side > shorter else 1
    room = math.isqrt(MAX_GRID_PIXELS // max(1, int(count) * max(1, int(height)) * max(1, int(width))))
    return max(1, min(wanted, room))


def enlarge_images(images: Tensor, factor: int) -> Tensor:
    """``[B, C, H, W]`` images (any dtype) with each pixel repeated ``factor`` x ``factor`` times."""
    if factor == 1:
        return images
    return images.repeat_interleave(factor, dim=-2).repeat_interleave(factor, dim=-1)


def enlarge_maps(maps: Tensor, factor: int) -> Tensor:
    """``[B, H, W]`` maps resized bilinearly to ``[B, H * factor, W * factor]``."""
    if factor == 1:
        return maps
    return upsample_maps(maps.float(), (int(maps.shape[-2]) * factor, int(maps.shape[-1]) * factor))
