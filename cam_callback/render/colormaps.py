"""Colour maps: OpenCV's, as ``[256, 3]`` lookup tables.

Each is read once per (name, device) into its table and applied by indexing on the maps' own device, so no
map goes through NumPy.
"""

from __future__ import annotations

import difflib
import functools

import cv2
import numpy as np
import torch
from torch import Tensor

__all__ = ["colorize", "colormap_lut", "colormap_names"]

_PREFIX = "COLORMAP_"


@functools.cache
def _colormap_codes() -> dict[str, int]:
    """OpenCV's colour maps, lower-case name without prefix -> ``cv2.COLORMAP_*`` code, sorted by name."""
    codes = {
        attr[len(_PREFIX) :].lower(): getattr(cv2, attr)
        for attr in dir(cv2)
        if attr.startswith(_PREFIX) and isinstance(getattr(cv2, attr), int)
    }
    return dict(sorted(codes.items()))


def colormap_names() -> list[str]:
    """The colour map names accepted by ``colormap`` arguments (lower case, without ``COLORMAP_``).

    They are read from the installed OpenCV's ``cv2.COLORMAP_*`` constants, e.g. ``"jet"``, ``"turbo"``,
    ``"viridis"``, ``"inferno"``.
    """
    return list(_colormap_codes())


def _canonical_colormap(name: str) -> str:
    """Map ``"JET"``, ``"COLORMAP_jet"`` or ``" jet "`` to ``"jet"``; raise for an unknown name."""
    if not isinstance(name, str):
        raise TypeError(f"`colormap` must be a str such as 'jet', got {type(name).__name__}")
    key = name.strip().lower()
    if key.startswith(_PREFIX.lower()):
        key = key[len(_PREFIX) :]
    codes = _colormap_codes()
    if key in codes:
        return key
    ranked = difflib.get_close_matches(key, list(codes), n=len(codes), cutoff=0.0)
    raise ValueError(f"`colormap`: unknown {name!r}; valid (closest first): {', '.join(ranked)}")


def _device_key(device: torch.device | str | None) -> torch.device:
    """A hashable, explicit device: ``"cuda"`` becomes ``cuda:<current index>``."""
    device = torch.device("cpu" if device is None else device)
    if device.type == "cuda" and device.index is None:
        device = torch.device("cuda", torch.cuda.current_device())
    return device


@functools.cache
def _cached_lut(name: str, device: torch.device) -> Tensor:
    codes = _colormap_codes()
    bgr = cv2.applyColorMap(np.arange(256, dtype=np.uint8).reshape(1, 256), codes[name])  # [1, 256, 3]
    rgb = np.ascontiguousarray(bgr[0, :, ::-1], dtype=np.float32) / 255.0
    return torch.from_numpy(rgb).to(device)


def colormap_lut(name: str, device: torch.device | str | None = None) -> Tensor:
    """The RGB lookup table of an OpenCV colour map.

    Built once per ``(name, device)`` and cached; the same tensor is returned on later calls, so do not
    modify it in place.

    Args:
        name: any OpenCV colour map, case-insensitive, with or without the ``COLORMAP_`` prefix
            (``"jet"``, ``"JET"``, ``"COLORMAP_VIRIDIS"``, ``"turbo"``); see :func:`colormap_names`.
        device: where the table lives (default: CPU).

    Returns:
        float32 ``[256, 3]`` on ``device``; row ``i`` is the RGB colour, in [0, 1], that
        ``cv2.applyColorMap`` gives to the grey value ``i``.

    Raises:
        TypeError: ``name`` is not a string.
        ValueError: ``name`` is not an OpenCV colour map; the message lists the valid names, closest first.
    """
    return _cached_lut(_canonical_colormap(name), _device_key(device))


def colorize(maps: Tensor, colormap: str = "jet") -> Tensor:
    """Colour maps with an OpenCV colour map, on their own device.

    Each value ``v`` becomes the colour of the grey level ``clamp(round(255 v), 0, 255)``, exactly what
    ``cv2.applyColorMap`` gives the quantised map (NaN counts as 0).

    Args:
        maps: ``[B, H, W]`` floats in [0, 1] on any device; values outside are clamped.
        colormap: a name accepted by :func:`colormap_lut`.

    Returns:
        float32 ``[B, 3, H, W]`` RGB in [0, 1] on ``maps.device``.
    """
    if maps.ndim != 3:
        raise ValueError(f"`maps` must be [B, H, W], got shape {tuple(maps.shape)}")
    lut = colormap_lut(colormap, maps.device)
    levels = torch.nan_to_num(maps.float(), nan=0.0).mul(255).round_().clamp_(0, 255).long()
    return lut[levels].permute(0, 3, 1, 2).contiguous()
