"""Numbers for attention drift: how far maps move between validations, and how much sits on the object.

Pure tensor functions of maps ``[B, h, w]`` (non-negative; normalised or raw) and masks; no Lightning.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = [
    "boxes_to_masks",
    "centre_of_mass",
    "cosine_distance",
    "energy_in_mask",
    "pointing_game",
    "shrink_maps",
]


def shrink_maps(maps: Tensor, max_side: int = 32) -> Tensor:
    """Area-downsample ``[B, H, W]`` maps so that neither side exceeds ``max_side`` (history storage)."""
    h, w = maps.shape[-2:]
    scale = max(h, w) / max_side
    if scale <= 1:
        return maps
    size = (max(1, round(h / scale)), max(1, round(w / scale)))
    return F.adaptive_avg_pool2d(maps.unsqueeze(1), size).squeeze(1)


def cosine_distance(a: Tensor, b: Tensor) -> Tensor:
    """Per-sample ``1 - cos(a, b)`` of flattened maps ``[B, h, w]``: 0 for the same pattern, up to 1.

    Two all-zero maps are at distance 0; an all-zero map against a non-zero one at distance 1.
    """
    a = a.flatten(1).float()
    b = b.flatten(1).float()
    na, nb = a.norm(dim=1), b.norm(dim=1)
    both = (na > 0) & (nb > 0)
    cos = (a * b).sum(dim=1) / torch.where(both, na * nb, torch.ones_like(na))
    return torch.where(both, 1 - cos, torch.where((na > 0) | (nb > 0), 1.0, 0.0)).clamp(0, 2)


def centre_of_mass(maps: Tensor, input_size: tuple[int, int] | None = None) -> Tensor:
    """Per-sample ``(y, x)`` centre of mass ``[B, 2]`` of non-negative maps, in pixels of ``input_size``.

    Pixel ``(i, j)`` of an ``h x w`` map covers the input's pixels around ``((i + 0.5) H/h - 0.5, ...)``.
    An all-zero map's centre is the map's centre.
    """
    b, h, w = maps.shape
    height, width = input_size or (h, w)
    weights = maps.float().clamp(min=0)
    ys = (torch.arange(h, device=maps.device, dtype=torch.float32) + 0.5) * (height / h) - 0.5
    xs = (torch.arange(w, device=maps.device, dtype=torch.float32) + 0.5) * (width / w) - 0.5
    total = weights.sum(dim=(1, 2))
    safe = torch.where(total > 0, total, torch.ones_like(total))
    cy = (weights.sum(dim=2) * ys).sum(dim=1) / safe
    cx = (weights.sum(dim=1) * xs).sum(dim=1) / safe
    centre = torch.tensor([(height - 1) / 2, (width - 1) / 2], device=maps.device)
    com = torch.stack([cy, cx], dim=1)
    return torch.where((total > 0).unsqueeze(1), com, centre)


def boxes_to_masks(boxes: Tensor, size: tuple[int, int]) -> Tensor:
    """Boxes ``[B, 4]``, ``(x1, y1, x2, y2)`` in pixels (x2, y2 exclusive), to boolean masks ``[B, H, W]``."""
    height, width = size
    ys = torch.arange(height, device=boxes.device).view(1, -1, 1)
    xs = torch.arange(width, device=boxes.device).view(1, 1, -1)
    x1, y1, x2, y2 = (boxes[:, i].view(-1, 1, 1) for i in range(4))
    return (ys >= y1) & (ys < y2) & (xs >= x1) & (xs < x2)


def as_masks(masks_or_boxes: Tensor, size: tuple[int, int]) -> Tensor:
    """Boolean ``[B, H, W]`` object masks from masks ``[B, H, W]`` / ``[B, 1, H, W]`` or boxes ``[B, 4]``.

    Masks must have the input's ``size``: one of another size (even another aspect ratio) is refused, not
    resized, since where it would land on the image is a guess. Float masks count as the object above 0.5.
    """
    m = masks_or_boxes
    if m.dim() == 2 and m.shape[1] == 4:
        return boxes_to_masks(m, size)
    if m.dim() == 4 and m.shape[1] == 1:
        m = m[:, 0]
    if m.dim() != 3:
        raise ValueError(f"masks must be [B, H, W] or boxes [B, 4], got {tuple(masks_or_boxes.shape)}")
    if tuple(m.shape[-2:]) != tuple(size):
        raise ValueError(
            f"masks of {m.shape[-2]}x{m.shape[-1]} do not match the {size[0]}x{size[1]} images; give masks "
            "of the images' size (resize them with the images) or boxes [B, 4]"
        )
    return m > 0.5 if m.is_floating_point() else m.bool()


def energy_in_mask(maps: Tensor, masks: Tensor) -> Tensor:
    """Per-sample share of a non-negative map's total inside the object mask, in [0, 1] (0 for a zero map).

    ``maps`` and ``masks`` share the input's size ``[B, H, W]``.
    """
    weights = maps.float().clamp(min=0)
    total = weights.sum(dim=(1, 2))
    inside = (weights * masks.float()).sum(dim=(1, 2))
    return torch.where(total > 0, inside / torch.where(total > 0, total, torch.ones_like(total)), 0.0)


def pointing_game(maps: Tensor, masks: Tensor) -> Tensor:
    """Per-sample hit (1.0) when the map's maximum lies on the object, else 0.0 (a zero map misses)."""
    flat = maps.flatten(1)
    peak = flat.argmax(dim=1, keepdim=True)
    hit = masks.flatten(1).gather(1, peak).squeeze(1).bool() & (flat.amax(dim=1) > 0)
    return hit.float()
