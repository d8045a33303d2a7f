"""Grids: tiles of overlays, heatmaps, display images or a map history, laid out in one ``uint8`` picture.

Everything runs on the device of its inputs; a grid function moves only its final ``uint8`` image to the
CPU, where captions, if any, are drawn (:mod:`cam_callback.render.captions`).

Example:
    >>> import torch
    >>> images = torch.rand(4, 3, 32, 32)
    >>> maps = torch.rand(4, 32, 32)
    >>> grid = overlay_grid(images, maps, alpha=0.4, colormap="turbo", captions=["a", "b", "c", "d"])
    >>> grid.shape, grid.dtype, grid.device.type
    (torch.Size([3, 70, 70]), torch.uint8, 'cpu')
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor
from torchvision.utils import make_grid

from ..core.checks import check_int
from ..core.maps import upsample_maps
from .boxes import BOX_COLORS, draw_boxes
from .captions import caption_tiles, check_captions
from .colormaps import colorize
from .display import blend, three_channels, to_display

__all__ = ["heatmap_grid", "history_grid", "image_grid", "overlay_grid"]


def _to_uint8(images: Tensor) -> Tensor:
    """[0, 1] floats -> uint8 levels ``round(255 x)``, on the same device."""
    return images.mul(255).round_().clamp_(0, 255).to(torch.uint8)


def _default_nrow(count: int, nrow: int | None) -> int:
    if nrow is None:
        return max(1, math.ceil(math.sqrt(count)))
    return check_int("nrow", nrow, minimum=1)


def _tiled(
    tiles: Tensor,
    nrow: int | None,
    pad: int,
    captions: Sequence[str] | None = None,
    *,
    captioned: int | None = None,
    argument: str = "captions",
) -> Tensor:
    """Lay uint8 tiles ``[N, 3, h, w]`` (any device) out in a grid of ``nrow`` per row and caption them.

    ``captions`` label the first ``captioned`` tiles (all of them by default). Returns uint8
    ``[3, H', W']`` on the CPU.
    """
    count, _, height, width = tiles.shape
    nrow = _default_nrow(count, nrow)
    pad = check_int("pad", pad, minimum=0)
    texts = check_captions(captions, count if captioned is None else captioned, argument)
    grid: Tensor = make_grid(tiles, nrow=nrow, padding=pad, pad_value=0).cpu()
    if texts is None:
        return grid
    origins = _tile_origins(count, nrow, height, width, pad)[: len(texts)]
    return caption_tiles(grid, origins, (height, width), texts)


def _tile_origins(count: int, nrow: int, height: int, width: int, pad: int) -> list[tuple[int, int]]:
    """Top-left ``(y, x)`` of each tile in the grid ``make_grid`` lays out (a single tile is unpadded)."""
    if count == 1:
        return [(0, 0)]
    columns = min(nrow, count)
    return [
        (pad + (k // columns) * (height + pad), pad + (k % columns) * (width + pad)) for k in range(count)
    ]


def _resized(images: Tensor, size: tuple[int, int]) -> Tensor:
    """``[N, C, h, w]`` floats resized to ``size`` (bilinear; antialiased, so shrinking does not alias)."""
    if tuple(images.shape[-2:]) == tuple(size):
        return images
    return F.interpolate(images, size=size, mode="bilinear", align_corners=False, antialias=True)


def _maps_3d(maps: Tensor) -> Tensor:
    """Accept ``[B, H, W]`` or ``[B, 1, H, W]`` maps."""
    if maps.ndim == 4 and maps.shape[1] == 1:
        maps = maps[:, 0]
    if maps.ndim != 3:
        raise ValueError(f"`maps` must be [B, H, W], got shape {tuple(maps.shape)}")
    return maps


def overlay_grid(
    images: Tensor,
    maps: Tensor,
    *,
    alpha: float = 0.5,
    colormap: str = "jet",
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
    nrow: int | None = None,
    captions: Sequence[str] | None = None,
    pad: int = 2,
    boxes: Sequence[Tensor | None] | None = None,
    shown: Tensor | None = None,
    heat: Tensor | None = None,
) -> Tensor:
    """Blend colour-mapped maps over their images and tile them into one picture.

    Per tile: ``(1 - alpha) * to_display(image) + alpha * colorize(map)``, quantised to ``round(255 x)``;
    tiles are laid out by ``torchvision.utils.make_grid`` (black padding). All of this runs on the inputs'
    device; only the finished ``uint8`` grid moves to the CPU, where the captions are drawn.

    Args:
        images: ``[B, C, H, W]`` network inputs (see :func:`cam_callback.render.to_display` for ``C`` and
            ``mean``/``std``).
        maps: ``[B, h, w]`` (or ``[B, 1, h, w]``) maps in [0, 1], same device; resized bilinearly to
            ``(H, W)`` when their size differs.
        alpha: weight of the colour map in the blend, in [0, 1].
        colormap: an OpenCV colour map name (see :func:`cam_callback.render.colormap_names`).
        mean: per-channel mean that normalised ``images``; with ``std``, undone for display.
        std: per-channel standard deviation that normalised ``images``.
        nrow: tiles per grid row; default ``ceil(sqrt(B))``.
        captions: ``B`` short ASCII strings (e.g. ``"y=3 p=5 0.82"``), each written in white on a dark band
            at the top of its tile, font scaled to the tile; an empty string leaves its tile bare. ``None``
            draws nothing.
        pad: padding in pixels between and around tiles (none for a single tile, as in ``make_grid``).
        boxes: sets of ``[B, 4]`` boxes (x1, y1, x2, y2 in input pixels), one box per tile and set, outlined
            in :data:`~cam_callback.render.boxes.BOX_COLORS` order (green, yellow, ...); None entries skipped.
        shown: ``to_display(images, mean, std)``, when several grids share it (computed here if None).
        heat: ``colorize(maps resized to (H, W), colormap)``, when a heatmap grid shares it (computed here
            if None).

    Returns:
        uint8 ``[3, H', W']`` RGB on the CPU, ready for :class:`~cam_callback.sinks.Sink.add_image`.
    """
    maps = _maps_3d(maps)
    if images.ndim != 4:
        raise ValueError(f"`images` must be [B, C, H, W], got shape {tuple(images.shape)}")
    if images.shape[0] != maps.shape[0]:
        raise ValueError(f"`images` has {images.shape[0]} samples but `maps` has {maps.shape[0]}")
    if shown is None:
        shown = to_display(images, mean, std)
    if heat is None:
        heat = colorize(upsample_maps(maps.float(), (int(images.shape[-2]), int(images.shape[-1]))), colormap)
    if heat.shape != shown.shape:
        raise ValueError(f"`heat` {tuple(heat.shape)} and `shown` {tuple(shown.shape)} must have one shape")
    tiles = _to_uint8(blend(shown, heat, alpha))
    for index, box_set in enumerate(boxes or []):
        if box_set is not None:
            tiles = draw_boxes(tiles, box_set, BOX_COLORS[index % len(BOX_COLORS)])
    return _tiled(tiles, nrow, pad, captions)


def image_grid(
    images: Tensor,
    *,
    nrow: int | None = None,
    captions: Sequence[str] | None = None,
    pad: int = 2,
) -> Tensor:
    """Tile display images that are already in [0, 1] (a saliency image, say).

    Args:
        images: ``[B, C, H, W]`` floats in [0, 1] (values outside are clipped), ``C`` 1 or 3, any device.
        nrow: tiles per grid row; default ``ceil(sqrt(B))``.
        captions: ``B`` short strings drawn at the top of the tiles, as in :func:`overlay_grid`.
        pad: padding in pixels between and around tiles.

    Returns:
        uint8 ``[3, H', W']`` RGB on the CPU.
    """
    if images.ndim != 4:
        raise ValueError(f"`images` must be [B, C, H, W], got shape {tuple(images.shape)}")
    return _tiled(_to_uint8(three_channels(images.float().clamp(0, 1))), nrow, pad, captions)


def heatmap_grid(
    maps: Tensor,
    *,
    colormap: str = "jet",
    nrow: int | None = None,
    pad: int = 2,
    heat: Tensor | None = None,
) -> Tensor:
    """Tile colour-mapped maps, without images.

    Args:
        maps: ``[B, H, W]`` (or ``[B, 1, H, W]``) maps in [0, 1] on any device.
        colormap: an OpenCV colour map name (see :func:`cam_callback.render.colormap_names`).
        nrow: tiles per grid row; default ``ceil(sqrt(B))``.
        pad: padding in pixels between and around tiles.
        heat: ``colorize(maps, colormap)``, when an overlay grid shares it (computed here if None).

    Returns:
        uint8 ``[3, H', W']`` RGB on the CPU.
    """
    maps = _maps_3d(maps)
    if heat is None:
        heat = colorize(maps, colormap)
    elif heat.shape != (maps.shape[0], 3, *maps.shape[1:]):
        raise ValueError(f"`heat` must be [B, 3, H, W] for maps {tuple(maps.shape)}, got {tuple(heat.shape)}")
    return _tiled(_to_uint8(heat), nrow, pad)


def history_grid(
    frames: Tensor,
    *,
    colormap: str = "jet",
    images: Tensor | None = None,
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
    alpha: float | None = None,
    column_captions: Sequence[str] | None = None,
    pad: int = 2,
    tile_side: int | None = None,
) -> Tensor:
    """How each sample's map changed over training: one row per sample, one column per validation.

    Args:
        frames: ``[T, B, h, w]`` maps in [0, 1], ``T`` validations (oldest first) of ``B`` samples.
        colormap: an OpenCV colour map name (see :func:`cam_callback.render.colormap_names`).
        images: optional ``[B, C, H, W]`` network inputs, shown as an extra first column; the maps are then
            resized bilinearly to ``(H, W)``.
        mean: per-channel normalisation mean of ``images`` (see :func:`cam_callback.render.to_display`).
        std: per-channel normalisation standard deviation of ``images``.
        alpha: with ``images``, blend each map over its image with this weight; ``None`` (default) shows
            the plain colour-mapped maps.
        column_captions: one label per column (``T``, or ``T + 1`` with ``images``), e.g. ``"epoch 3"``,
            drawn on the tiles of the first row; an empty string leaves a tile bare.
        pad: padding in pixels between and around tiles.
        tile_side: the tiles' longer side in pixels, the aspect ratio kept: images and maps are resized to
            it (bilinear, antialiased), so the grid's size depends on ``T`` and ``B`` alone, not on the
            input's size. ``None``: the images' size (the maps' without ``images``).

    Returns:
        uint8 ``[3, B * (H + pad) + pad, K * (W + pad) + pad]`` RGB on the CPU, ``K`` the number of
        columns and ``H x W`` the tile size (a single tile comes unpadded).
    """
    if frames.ndim != 4:
        raise ValueError(f"`frames` must be [T, B, h, w], got shape {tuple(frames.shape)}")
    steps, count = frames.shape[:2]
    frames = frames.float()
    height, width = int(frames.shape[-2]), int(frames.shape[-1])
    if images is not None and (images.ndim != 4 or images.shape[0] != count):
        raise ValueError(
            f"`images` must be [B, C, H, W] with B={count} (from `frames`), got shape {tuple(images.shape)}"
        )
    if images is None and alpha is not None:
        raise ValueError("`alpha` blends maps over `images`; give `images` too or leave `alpha` as None")
    if images is not None:
        height, width = int(images.shape[-2]), int(images.shape[-1])
    if tile_side is not None:
        scale = check_int("tile_side", tile_side, minimum=1) / max(height, width)
        height, width = max(1, round(height * scale)), max(1, round(width * scale))
    columns: list[Tensor] = []  # each [B, 3, height, width] uint8
    shown: Tensor | None = None
    if images is not None:
        shown = _resized(to_display(images, mean, std), (height, width))
        columns.append(_to_uint8(shown))
    flat = _resized(frames.reshape(steps * count, 1, *frames.shape[-2:]), (height, width))[:, 0]
    heat = colorize(flat, colormap).view(steps, count, 3, height, width)
    for t in range(steps):
        tile = heat[t] if alpha is None or shown is None else blend(shown, heat[t], alpha)
        columns.append(_to_uint8(tile))
    tiles = torch.stack(columns, dim=1).flatten(0, 1)  # sample-major: row b holds sample b
    ncols = len(columns)
    return _tiled(tiles, ncols, pad, column_captions, captioned=ncols, argument="column_captions")
