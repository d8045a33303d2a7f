"""Focus numbers: where the maps look, judged without object masks.

Pure tensor functions of non-negative maps ``[B, h, w]`` (any scale; each map is read as a distribution of
attention over its pixels); no Lightning. Each returns one number per sample (or per class), averaged by
the caller:

* :func:`concentration`: ``1 - H(p) / log(h w)``, how peaked a map is: 0 for a flat map, 1 for one pixel.
* :func:`border_share`: the map's mass in the outer band divided by the band's share of the area: 1 for a
  map spread evenly, below 1 for maps away from the edges, above 1 for maps piled on the edges.
* :func:`consistency`: the correlation of each map with the mean of its class's other maps: near 1 when a
  class's maps look at the same place whatever the object's position, near 0 when they follow the object.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

__all__ = ["BORDER_WIDTH", "border_band", "border_share", "concentration", "consistency", "focus_numbers"]

BORDER_WIDTH = 0.1
"""The outer band's width as a share of each side (at least one pixel): 10 %, the band is 36 % of a square."""


def _mass(maps: Tensor) -> tuple[Tensor, Tensor]:
    """Flattened non-negative float maps ``[B, n]`` and their totals ``[B]``."""
    weights = maps.flatten(1).float().clamp(min=0)
    return weights, weights.sum(dim=1)


def concentration(maps: Tensor) -> Tensor:
    """Per-sample ``1 - H(p) / log(n)``, ``p`` the map divided by its total over its ``n`` pixels, in [0, 1].

    0: attention spread evenly (or a zero map, which looks nowhere in particular); 1: all on one pixel. A
    map of one pixel is 0.
    """
    weights, total = _mass(maps)
    n = weights.shape[1]
    if n < 2:
        return torch.zeros(weights.shape[0], device=maps.device)
    p = weights / torch.where(total > 0, total, torch.ones_like(total)).unsqueeze(1)
    entropy = -(p * torch.log(torch.where(p > 0, p, torch.ones_like(p)))).sum(dim=1)
    return torch.where(total > 0, 1 - entropy / math.log(n), 0.0).clamp(0, 1)


def border_band(
    size: tuple[int, int], width: float = BORDER_WIDTH, device: torch.device | str = "cpu"
) -> Tensor:
    """Boolean ``[h, w]`` mask of the outer band: ``max(1, round(width * side))`` pixels from each edge."""
    h, w = size
    bh, bw = max(1, round(width * h)), max(1, round(width * w))
    ys = torch.arange(h, device=device).view(-1, 1)
    xs = torch.arange(w, device=device).view(1, -1)
    return (ys < bh) | (ys >= h - bh) | (xs < bw) | (xs >= w - bw)


def border_share(maps: Tensor, width: float = BORDER_WIDTH) -> Tensor:
    """Per-sample (share of the mass in the outer band) / (band's share of the pixels), from 0.

    1: no preference for the edges (a flat map); below 1: attention away from the edges; above 1: piled on
    them (a band of 10 % a side covers 36 % of a square map, so at most 2.8). A zero map is 0.
    """
    band = border_band((int(maps.shape[-2]), int(maps.shape[-1])), width, maps.device).flatten()
    weights, total = _mass(maps)
    share = (weights * band).sum(dim=1) / torch.where(total > 0, total, torch.ones_like(total))
    area = band.float().mean()
    return torch.where(total > 0, share / area, 0.0)


def consistency(maps: Tensor, labels: Tensor | None = None) -> Tensor:
    """Per-sample correlation of each map with the mean of its class's *other* maps, in [-1, 1].

    The Pearson correlation over the pixels: near 1 when a class's maps look at the same place whatever
    the object's position, near 0 when they follow objects at different places. The map itself is left
    out of the mean it is compared with (with few samples a map is otherwise like a mean it makes up),
    and each map's own mean is taken out (two broad maps are otherwise alike whatever their peaks).

    A flat map (no pixel differs from its mean, such as a 1x1 layer's map upsampled) looks nowhere in
    particular and is left out. A sample counts only when its class has at least two maps that are not
    flat; without ``labels`` all maps form one class. Returns the values of the samples that count, in
    their order: an empty tensor when none does.
    """
    flat = maps.flatten(1).double().clamp(min=0)
    centred = flat - flat.mean(dim=1, keepdim=True)
    scale = flat.abs().amax(dim=1).clamp(min=torch.finfo(torch.float64).tiny)
    varied = centred.abs().amax(dim=1) > 1e-6 * scale  # rounding leaves ~1e-16 in an upsampled constant
    groups = torch.zeros(flat.shape[0], dtype=torch.long) if labels is None else labels.detach().cpu()
    groups = groups.to(flat.device)
    values = torch.full((flat.shape[0],), math.nan, dtype=torch.float64, device=flat.device)
    for group in torch.unique(groups):
        members = (groups == group) & varied
        count = int(members.sum())
        if count < 2:
            continue
        own = centred[members]
        others = (own.sum(dim=0, keepdim=True) - own) / (count - 1)  # each map's classmates' mean, centred
        norms = own.norm(dim=1) * others.norm(dim=1)
        values[members] = torch.where(norms > 0, (own * others).sum(dim=1) / norms.clamp(min=1e-300), 0.0)
    return values[~torch.isnan(values)].float()


def focus_numbers(maps: Tensor, labels: Tensor | None = None) -> dict[str, float]:
    """The focus numbers of a batch of maps, each averaged over the samples.

    Maps holding NaN or Inf are left out (as from the drift means); with none left, ``concentration`` and
    ``border_share`` are NaN; ``consistency`` is NaN when no class has two maps that are not flat.
    Labels other than one class index per sample (detection boxes, segmentation masks) are ignored: all
    maps then form one class.
    """
    if labels is not None and (labels.dim() != 1 or len(labels) != len(maps) or labels.is_floating_point()):
        labels = None
    finite = torch.isfinite(maps.flatten(1)).all(dim=1)  # a NaN or Inf map is left out, never read as 0
    if not bool(finite.all()):
        maps = maps[finite]
        labels = labels[finite.to(labels.device)] if labels is not None else None
    if not len(maps):
        return {"concentration": math.nan, "border_share": math.nan, "consistency": math.nan}
    numbers = {
        "concentration": float(concentration(maps).mean()),
        "border_share": float(border_share(maps).mean()),
    }
    alike = consistency(maps, labels)
    numbers["consistency"] = float(alike.mean()) if alike.numel() else math.nan
    return numbers
