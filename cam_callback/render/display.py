"""Display images: network inputs turned back into RGB, saliency images, and blending maps over images.

Every function runs on its inputs' device and returns float32 in [0, 1].
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from ..core.checks import check_float, check_floats

__all__ = ["blend", "check_normalization", "saliency_to_image", "three_channels", "to_display"]


Normalization = float | Sequence[float]
"""One number for every channel, or one per channel."""


def _numbers(name: str, values: Normalization, positive: bool = False) -> tuple[float, ...]:
    if isinstance(values, (int, float)) and not isinstance(values, bool):
        values = [values]
    return check_floats(name, values, positive=positive)


def check_normalization(
    mean: Normalization | None, std: Normalization | None
) -> tuple[tuple[float, ...], tuple[float, ...]] | None:
    """Validate a ``mean``/``std`` pair: both or neither, each a number or list of numbers, ``std`` positive.

    A single number (or a one-item list) stands for every channel. Returns ``(mean, std)`` as tuples of
    floats, or None when neither is given.
    """
    if (mean is None) != (std is None):
        raise ValueError("`mean` and `std` go together: give both or neither")
    if mean is None or std is None:
        return None
    return _numbers("mean", mean), _numbers("std", std, positive=True)


def _channel_stats(values: tuple[float, ...], argument: str, channels: int, like: Tensor) -> Tensor:
    if len(values) == 1:
        values = values * channels  # one number for every channel
    if len(values) != channels:
        raise ValueError(
            f"`{argument}` has {len(values)} values but the images have {channels} channel(s); give one "
            f"value per channel, or a single number for all of them"
        )
    return torch.tensor(values, dtype=torch.float32, device=like.device).view(1, -1, 1, 1)


def to_display(
    images: Tensor,
    mean: Normalization | None = None,
    std: Normalization | None = None,
) -> Tensor:
    """Turn network inputs back into displayable RGB images, on their own device.

    With ``mean`` and ``std`` the input normalisation is undone (``x * std + mean`` per channel) and the
    result clamped to [0, 1]. Without them each image is min-max scaled to [0, 1] over all its pixels and
    channels; a constant image becomes zeros.

    Channels: one channel is repeated to grey RGB; two get a zero third (blue) channel; with more than
    three, only the first three are shown (as RGB).

    Args:
        images: ``[B, C, H, W]`` network inputs, any float dtype and device.
        mean: the normalisation's means, ``C`` values or one for every channel; give both or neither.
        std: its standard deviations, ``C`` values or one for every channel.

    Returns:
        float32 ``[B, 3, H, W]`` in [0, 1] on ``images.device``.

    Raises:
        TypeError: ``mean`` or ``std`` is not a list of numbers.
        ValueError: ``images`` is not 4-D, only one of ``mean``/``std`` is given, their length is not
            ``C``, or a ``std`` is not positive.
    """
    if images.ndim != 4:
        raise ValueError(f"`images` must be [B, C, H, W], got shape {tuple(images.shape)}")
    normalization = check_normalization(mean, std)
    images = images.float()
    channels = images.shape[1]
    if normalization is not None:
        mean_t = _channel_stats(normalization[0], "mean", channels, images)
        std_t = _channel_stats(normalization[1], "std", channels, images)
        shown = three_channels(images * std_t + mean_t).clamp_(0, 1)
    else:
        shown = three_channels(images)
        flat = shown.flatten(1)
        low = flat.amin(dim=1).view(-1, 1, 1, 1)
        span = flat.amax(dim=1).view(-1, 1, 1, 1) - low
        positive = span > 0
        shown = torch.where(positive, (shown - low) / torch.where(positive, span, 1.0), 0.0).clamp_(0, 1)
    return shown


def three_channels(images: Tensor) -> Tensor:
    """Three channels, ``[B, C, H, W] -> [B, 3, H, W]``.

    One (grey) is repeated, two get a zero blue channel added, of more the first three are kept.
    """
    channels = images.shape[1]
    if channels == 1:
        return images.expand(-1, 3, -1, -1).clone()
    if channels == 2:
        return torch.cat([images, torch.zeros_like(images[:, :1])], dim=1)
    return images[:, :3].clone()


def blend(images: Tensor, heat: Tensor, alpha: float) -> Tensor:
    """Alpha-blend colour maps over images: ``(1 - alpha) * images + alpha * heat``.

    Args:
        images: ``[B, 3, H, W]`` RGB in [0, 1].
        heat: colour-mapped maps of the same shape and device
            (see :func:`cam_callback.render.colormaps.colorize`).
        alpha: weight of ``heat``, in [0, 1]; 0 shows only the images, 1 only the maps.

    Returns:
        ``[B, 3, H, W]`` on the inputs' device.

    Raises:
        TypeError: ``alpha`` is not a real number.
        ValueError: ``alpha`` is outside [0, 1] or the shapes differ.
    """
    alpha = check_float("alpha", alpha, low=0.0, high=1.0)
    if images.shape != heat.shape:
        raise ValueError(
            f"`images` {tuple(images.shape)} and `heat` {tuple(heat.shape)} must have the same shape"
        )
    return images * (1.0 - alpha) + heat * alpha


def saliency_to_image(saliency: Tensor) -> Tensor:
    """Turn a signed saliency ``[B, C, H, W]`` into an image in [0, 1] for display.

    Per image: shift and scale to mean 0.5 and standard deviation 0.1 (population std over all of C, H, W),
    then clip to [0, 1]. A constant image becomes 0.5 everywhere. Float32, same shape and device.
    """
    x = saliency.float()
    flat = x.flatten(1)
    shape = (-1,) + (1,) * (x.dim() - 1)
    mean = flat.mean(dim=1).view(shape)
    std = flat.std(dim=1, correction=0).view(shape)
    safe = torch.where(std > 0, std, torch.ones_like(std))
    return ((x - mean) / safe * 0.1 + 0.5).clamp(0, 1)
