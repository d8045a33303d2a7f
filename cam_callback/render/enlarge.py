"""Small inputs shown enlarged: a whole-number factor that brings a tile's shorter side to a minimum size.

Display only: the maps and numbers are computed at the input's size before anything here runs. Images are
enlarged by repeating each pixel (what was computed, only bigger); maps bilinearly, as they are drawn
over an image of any size anyway.
"""

from __future__ import annotations

import math

from torch import Tensor

from ..core.maps import upsample_maps

__all__ = ["display_factor", "enlarge_images", "enlarge_maps"]


def display_factor(height: int, width: int, min_side: int) -> int:
    """The smallest whole factor that makes ``min(height, width) * factor >= min_side`` (1 for 0 or less)."""
    shorter = max(1, min(int(height), int(width)))
    return max(1, math.ceil(min_side / shorter)) if min_side > shorter else 1


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
