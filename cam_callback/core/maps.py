"""Post-processing of raw maps: per-image normalisation to [0, 1] and resizing to the input's size."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ["normalize_maps", "upsample_maps"]


def normalize_maps(maps: Tensor) -> Tensor:
    """Min-max normalise each map of ``[B, H, W]`` to [0, 1]; a constant map becomes all zeros.

    Free of scale: ``maps * s`` (any ``s > 0``, 1e-9 or 1e9 alike) normalises to the same result up to
    float rounding, so the tiny maps of an untrained network still show their structure. A map holding
    NaN or an infinity anywhere becomes all NaN: it has no meaning to show, and must not pass for a map.
    """
    maps = maps.float()
    flat = maps.flatten(1)
    finite = flat.isfinite().all(dim=1).view(-1, 1, 1)
    low = flat.amin(dim=1).view(-1, 1, 1)
    span = flat.amax(dim=1).view(-1, 1, 1) - low
    positive = span > 0
    safe_span = torch.where(positive, span, torch.ones_like(span))
    scaled = torch.where(positive, ((maps - low) / safe_span).clamp_(0, 1), torch.zeros_like(maps))
    return torch.where(finite, scaled, torch.full_like(maps, float("nan")))


def upsample_maps(maps: Tensor, size: tuple[int, int]) -> Tensor:
    """Bilinearly resize ``[B, h, w]`` maps to ``size = (H, W)`` (``align_corners=False``)."""
    if tuple(maps.shape[-2:]) == tuple(size):
        return maps
    return F.interpolate(maps.unsqueeze(1), size=size, mode="bilinear", align_corners=False).squeeze(1)
