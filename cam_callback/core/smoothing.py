"""Augmentation smoothing: average a batch's maps over flipped and rescaled copies of the inputs.

Eigen smoothing, the other smoothing option, lives with the weights in
:func:`cam_callback.core.methods.combine`.

Augmentation smoothing (test-time augmentation): the maps of the original batch are averaged with the maps
of the batch flipped left-right and resized by each factor of ``scales``, and of each such combination.
Every augmented map is brought back to the geometry of the original map first: flipped back, then
bilinearly resized to the layer's original ``(h, w)``. Each augmentation costs one more engine pass
(one forward and, for gradient methods, one backward; more for Score-CAM and Ablation-CAM), so the default
``(1.0, 1.1, 0.9)`` costs six passes in all, the original's included.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch.nn.functional as F
from torch import Tensor

from .checks import check_real
from .maps import upsample_maps

__all__ = [
    "DEFAULT_SCALES",
    "augment",
    "augmentations",
    "average_over_augmentations",
    "check_scales",
    "restore",
]

DEFAULT_SCALES: tuple[float, ...] = (1.0, 1.1, 0.9)

Augmentation = tuple[bool, float]  # (flip left-right, scale factor)


def check_scales(scales: Sequence[float]) -> tuple[float, ...]:
    """Validate ``aug_scales``: a non-empty sequence of finite positive numbers; returns them as floats."""
    if isinstance(scales, (str, bytes)) or not isinstance(scales, Sequence):
        raise TypeError(f"`aug_scales` must be a sequence of floats, got {type(scales).__name__}")
    if not scales:
        raise ValueError("`aug_scales` must hold at least one scale, e.g. (1.0, 1.1, 0.9)")
    out = []
    for scale in scales:
        check_real("aug_scales", scale)
        if not math.isfinite(scale) or scale <= 0:
            raise ValueError(f"`aug_scales` must be finite and positive, got {scale}")
        out.append(float(scale))
    return tuple(out)


def augmentations(scales: Sequence[float]) -> list[Augmentation]:
    """Every ``(flip, scale)`` pair for flips ``(False, True)`` and the distinct ``scales`` plus 1.0.

    The identity ``(False, 1.0)`` comes first (it is the engine's main pass); ``2 * S`` pairs in all for
    ``S`` distinct scales counting 1.0.
    """
    distinct = list(dict.fromkeys((1.0, *check_scales(scales))))
    return [(flip, scale) for flip in (False, True) for scale in distinct]


def augment(inputs: Tensor, flip: bool, scale: float) -> Tensor:
    """Resize ``[B, C, H, W]`` by ``scale`` (bilinear, sides rounded, at least 1) and flip it left-right."""
    if inputs.dim() != 4:
        raise ValueError(f"`aug_smooth` needs [B, C, H, W] inputs, got shape {tuple(inputs.shape)}")
    if scale != 1.0:
        size = (max(1, round(inputs.shape[-2] * scale)), max(1, round(inputs.shape[-1] * scale)))
        inputs = F.interpolate(inputs, size=size, mode="bilinear", align_corners=False)
    return inputs.flip(-1) if flip else inputs


def restore(maps: Tensor, flip: bool, size: tuple[int, int]) -> Tensor:
    """Bring maps ``[B, h', w']`` of an augmented batch back: flip back, then resize to ``size``."""
    if flip:
        maps = maps.flip(-1)
    return upsample_maps(maps, size)


def average_over_augmentations(
    run: Callable[[Tensor], dict[tuple[str, str], Tensor]],
    inputs: Tensor,
    base: dict[tuple[str, str], Tensor],
    scales: Sequence[float] = DEFAULT_SCALES,
) -> dict[tuple[str, str], Tensor]:
    """Average ``base`` (the maps of ``inputs``) with the maps ``run`` gives for each augmentation.

    Args:
        run: one engine pass, ``augmented inputs -> {key: [B, h', w'] raw map}``.
        inputs: the original ``[B, C, H, W]`` batch.
        base: the original batch's maps ``{key: [B, h, w]}``; ``run`` must return the same keys.
        scales: resize factors; see :func:`augmentations`.

    Returns:
        ``{key: [B, h, w]}`` float32, the mean over the original and every augmentation.
    """
    totals = {key: value.float().clone() for key, value in base.items()}
    passes = augmentations(scales)
    for flip, scale in passes[1:]:
        maps = run(augment(inputs, flip, scale))
        for key, total in totals.items():
            total += restore(maps[key].float(), flip, (int(total.shape[-2]), int(total.shape[-1])))
    return {key: total / len(passes) for key, total in totals.items()}
