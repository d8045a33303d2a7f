"""Faithfulness of maps: what happens to the target's probability when the salient pixels go or come.

Pure tensor functions; the forwards they need are run by :mod:`cam_callback.capture.faithfulness`.

* Deletion and insertion (RISE, Petsiuk et al. 2018): rank the pixels by the map, then remove (deletion:
  replace by the baseline) or reveal (insertion: start from the baseline) the most salient ones in
  ``steps`` equal fractions; the target's probability at each of the ``steps + 1`` points is a curve over
  [0, 1] whose area (trapezoids) is the number, in [0, 1]. Low deletion and high insertion are faithful.
  Baselines, the paper's: zeros for deletion (the normalised input's zero, the data's mean colour for
  mean-std normalised images), a Gaussian blur of the image (kernel 11, sigma 5) for insertion.
* Average drop and increase in confidence (Chattopadhyay et al. 2018): one forward of the input times the
  map (upsampled, in [0, 1]); average drop is the mean of ``max(0, p - p_map) / p`` (a fraction, the paper's
  percentage / 100; low is faithful), increase in confidence the share of samples with ``p_map > p`` (high
  is faithful).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = [
    "BLUR_KERNEL",
    "BLUR_SIGMA",
    "DEFAULT_STEPS",
    "FAITHFULNESS_NAMES",
    "average_drop",
    "blurred",
    "curve_area",
    "increase_in_confidence",
    "top_pixels",
]

FAITHFULNESS_NAMES = ("deletion", "insertion", "average_drop", "increase_in_confidence")
"""The faithfulness numbers the callback can log."""

DEFAULT_STEPS = 16
"""Equal fractions of the pixels removed or revealed per curve: ``DEFAULT_STEPS + 1`` forwards per image."""

BLUR_KERNEL = 11
BLUR_SIGMA = 5.0


def top_pixels(maps: Tensor, steps: int = DEFAULT_STEPS) -> Tensor:
    """Masks ``[steps + 1, B, H, W]`` (0/1): mask ``k`` covers each map's ``round(k n / steps)`` top pixels.

    Pixels are ranked by decreasing value, ties by position (row-major), so the masks nest.
    """
    b, h, w = maps.shape
    n = h * w
    order = torch.argsort(maps.flatten(1).float(), dim=1, descending=True, stable=True)
    rank = torch.empty_like(order)
    rank.scatter_(1, order, torch.arange(n, device=maps.device).expand(b, n))
    counts = [round(k * n / steps) for k in range(steps + 1)]
    return torch.stack([(rank < c).view(b, h, w) for c in counts]).float()


def blurred(images: Tensor, kernel: int = BLUR_KERNEL, sigma: float = BLUR_SIGMA) -> Tensor:
    """A Gaussian blur of ``[B, C, H, W]`` images per channel (reflected borders; replicated if too small)."""
    x = torch.arange(kernel, dtype=torch.float32, device=images.device) - (kernel - 1) / 2
    weights = torch.exp(-(x**2) / (2 * sigma**2))
    weights = (weights / weights.sum()).to(images.dtype)
    c = images.shape[1]
    pad = kernel // 2
    mode = "reflect" if min(images.shape[-2:]) > pad else "replicate"
    out = F.pad(images, (pad, pad, 0, 0), mode=mode)
    out = F.conv2d(out, weights.view(1, 1, 1, -1).expand(c, 1, 1, kernel), groups=c)
    out = F.pad(out, (0, 0, pad, pad), mode=mode)
    return F.conv2d(out, weights.view(1, 1, -1, 1).expand(c, 1, kernel, 1), groups=c)


def curve_area(scores: Tensor) -> Tensor:
    """Area under curves ``[steps + 1, B]`` sampled at equal steps over [0, 1] (trapezoids), per sample."""
    steps = scores.shape[0] - 1
    if steps < 1:
        raise ValueError(f"a curve needs at least 2 points, got {scores.shape[0]}")
    return (scores.sum(dim=0) - (scores[0] + scores[-1]) / 2) / steps


def average_drop(full: Tensor, masked: Tensor) -> Tensor:
    """Mean of ``max(0, full - masked) / full`` over probabilities ``[B]``, in [0, 1] (low is faithful)."""
    safe = torch.where(full > 0, full, torch.ones_like(full))
    return ((full - masked).clamp(min=0) / safe).mean()


def increase_in_confidence(full: Tensor, masked: Tensor) -> Tensor:
    """Share of samples whose probability rose on the image times its map, in [0, 1] (high is faithful)."""
    return (masked > full).float().mean()
