"""Drawing: colour maps, display images, blending and tile grids.

Everything here runs on the device of its inputs; a grid function moves only its final ``uint8`` image
to the CPU, where captions, if any, are drawn with OpenCV. Colour maps are OpenCV's, read once per
(name, device) into a ``[256, 3]`` lookup table and applied by indexing, so no map goes through NumPy.

Example:
    >>> import torch
    >>> images = torch.rand(4, 3, 32, 32)
    >>> maps = torch.rand(4, 32, 32)
    >>> grid = overlay_grid(images, maps, alpha=0.4, colormap="turbo", captions=["a", "b", "c", "d"])
    >>> grid.shape, grid.dtype, grid.device.type
    (torch.Size([3, 70, 70]), torch.uint8, 'cpu')
"""

from __future__ import annotations

import difflib
import functools
import math
from collections.abc import Sequence

import cv2
import numpy as np
import torch
from torch import Tensor
from torchvision.utils import make_grid

from .maps import upsample_maps

__all__ = [
    "blend",
    "colorize",
    "colormap_lut",
    "colormap_names",
    "heatmap_grid",
    "history_grid",
    "image_grid",
    "overlay_grid",
    "to_display",
]

_PREFIX = "COLORMAP_"
_FONT = cv2.FONT_HERSHEY_SIMPLEX


# --------------------------------------------------------------------------------------------------
# Colour maps
# --------------------------------------------------------------------------------------------------


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


# --------------------------------------------------------------------------------------------------
# Images
# --------------------------------------------------------------------------------------------------


def _channel_stats(values: Sequence[float], argument: str, channels: int, like: Tensor) -> Tensor:
    if isinstance(values, (str, bytes)) or not isinstance(values, Sequence):
        raise TypeError(
            f"`{argument}` must be a sequence of per-channel floats, got {type(values).__name__}"
        )
    if len(values) != channels:
        raise ValueError(
            f"`{argument}` has {len(values)} value(s) but the images have {channels} channel(s); "
            f"give one value per channel"
        )
    return torch.tensor([float(v) for v in values], dtype=torch.float32, device=like.device).view(1, -1, 1, 1)


def to_display(
    images: Tensor,
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
) -> Tensor:
    """Turn network inputs back into displayable RGB images, on their own device.

    With ``mean`` and ``std`` the input normalisation is undone (``x * std + mean`` per channel) and the
    result clamped to [0, 1]. Without them each image is min-max scaled to [0, 1] over all its pixels and
    channels; a constant image becomes zeros.

    Channels: one channel is repeated to grey RGB; two get a zero third (blue) channel; with more than
    three, only the first three are shown (as RGB).

    Args:
        images: ``[B, C, H, W]`` network inputs, any float dtype and device.
        mean: per-channel means of the normalisation, ``C`` values; give both or neither.
        std: per-channel standard deviations, ``C`` values.

    Returns:
        float32 ``[B, 3, H, W]`` in [0, 1] on ``images.device``.

    Raises:
        ValueError: ``images`` is not 4-D, only one of ``mean``/``std`` is given, or their length is
            not ``C``.
    """
    if images.ndim != 4:
        raise ValueError(f"`images` must be [B, C, H, W], got shape {tuple(images.shape)}")
    if (mean is None) != (std is None):
        raise ValueError("`mean` and `std` go together: give both or neither")
    images = images.float()
    channels = images.shape[1]
    if mean is not None and std is not None:
        mean_t = _channel_stats(mean, "mean", channels, images)
        std_t = _channel_stats(std, "std", channels, images)
        shown = _three_channels(images * std_t + mean_t).clamp_(0, 1)
    else:
        shown = _three_channels(images)
        flat = shown.flatten(1)
        low = flat.amin(dim=1).view(-1, 1, 1, 1)
        span = flat.amax(dim=1).view(-1, 1, 1, 1) - low
        positive = span > 0
        shown = torch.where(positive, (shown - low) / torch.where(positive, span, 1.0), 0.0).clamp_(0, 1)
    return shown


def _three_channels(images: Tensor) -> Tensor:
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
        heat: colour-mapped maps of the same shape and device (see :func:`colorize`).
        alpha: weight of ``heat``, in [0, 1]; 0 shows only the images, 1 only the maps.

    Returns:
        ``[B, 3, H, W]`` on the inputs' device.

    Raises:
        TypeError: ``alpha`` is not a real number.
        ValueError: ``alpha`` is outside [0, 1] or the shapes differ.
    """
    if isinstance(alpha, bool) or not isinstance(alpha, (int, float)):
        raise TypeError(f"`alpha` must be a float in [0, 1], got {type(alpha).__name__}")
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"`alpha` must be in [0, 1], got {alpha}")
    if images.shape != heat.shape:
        raise ValueError(
            f"`images` {tuple(images.shape)} and `heat` {tuple(heat.shape)} must have the same shape"
        )
    return images * (1.0 - alpha) + heat * alpha


# --------------------------------------------------------------------------------------------------
# Grids
# --------------------------------------------------------------------------------------------------


def _to_uint8(images: Tensor) -> Tensor:
    """[0, 1] floats -> uint8 levels ``round(255 x)``, on the same device."""
    return images.mul(255).round_().clamp_(0, 255).to(torch.uint8)


def _default_nrow(count: int, nrow: int | None) -> int:
    if nrow is None:
        return max(1, math.ceil(math.sqrt(count)))
    if isinstance(nrow, bool) or not isinstance(nrow, int):
        raise TypeError(f"`nrow` must be an int, got {type(nrow).__name__}")
    if nrow < 1:
        raise ValueError(f"`nrow` must be at least 1, got {nrow}")
    return nrow


def _check_pad(pad: int) -> int:
    if isinstance(pad, bool) or not isinstance(pad, int):
        raise TypeError(f"`pad` must be an int, got {type(pad).__name__}")
    if pad < 0:
        raise ValueError(f"`pad` must be non-negative, got {pad}")
    return pad


def _grid(tiles: Tensor, nrow: int, pad: int) -> Tensor:
    """uint8 ``[N, 3, h, w]`` on any device -> uint8 ``[3, H', W']`` on the CPU."""
    return make_grid(tiles, nrow=nrow, padding=pad, pad_value=0).cpu()


def _tile_origins(count: int, nrow: int, height: int, width: int, pad: int) -> list[tuple[int, int]]:
    """Top-left ``(y, x)`` of each tile in the grid ``make_grid`` lays out (a single tile is unpadded)."""
    if count == 1:
        return [(0, 0)]
    columns = min(nrow, count)
    return [
        (pad + (k // columns) * (height + pad), pad + (k % columns) * (width + pad)) for k in range(count)
    ]


_MIN_SCALE = 0.3  # smallest font scale that stays legible (about 8 px tall)


def _wrap(text: str, scale: float, thickness: int, room: int) -> list[str]:
    """Split ``text`` at spaces into lines no wider than ``room`` pixels (a long word keeps its own line)."""
    lines: list[str] = []
    for word in text.split():
        trial = f"{lines[-1]} {word}" if lines else word
        if lines and cv2.getTextSize(trial, _FONT, scale, thickness)[0][0] <= room:
            lines[-1] = trial
        else:
            lines.append(word)
    return lines or [text]


def _draw_caption(tile: np.ndarray, text: str) -> None:
    """Write ``text`` in white over a darkened band at the top of ``tile`` (``[h, w, 3]`` uint8, in place).

    The font is about 9% of the tile's height (at least about 8 px); a caption too wide for the tile is first
    shrunk down to the smallest legible size, then wrapped at spaces. Whatever still overflows is clipped.
    """
    height, width = tile.shape[:2]
    (_, unit_height), unit_baseline = cv2.getTextSize("Ag", _FONT, 1.0, 1)
    scale = max(_MIN_SCALE, 0.09 * height / (unit_height + unit_baseline))
    margin = max(1, round(0.02 * height))
    room = max(1, width - 2 * margin)
    text_width = cv2.getTextSize(text, _FONT, scale, 1)[0][0]
    if text_width > room:
        scale = max(_MIN_SCALE, scale * room / text_width)
    thickness = 2 if scale >= 1.2 else 1
    lines = [text]
    if cv2.getTextSize(text, _FONT, scale, thickness)[0][0] > room:
        lines = _wrap(text, scale, thickness, room)
    (_, line_height), baseline = cv2.getTextSize("Ag", _FONT, scale, thickness)
    step = line_height + baseline
    band = min(height, len(lines) * step + 2 * margin)
    tile[:band] = (tile[:band].astype(np.float32) * 0.3).astype(np.uint8)
    for row, line in enumerate(lines):
        origin = (margin, margin + line_height + row * step)
        cv2.putText(tile, line, origin, _FONT, scale, (255, 255, 255), thickness, cv2.LINE_AA)


def _caption(
    grid: Tensor, origins: list[tuple[int, int]], size: tuple[int, int], captions: Sequence[str]
) -> Tensor:
    """Draw each non-empty caption inside its own tile of a CPU uint8 ``[3, H', W']`` grid."""
    height, width = size
    canvas = np.ascontiguousarray(grid.permute(1, 2, 0).numpy())
    for (y, x), text in zip(origins, captions, strict=True):
        if not text:
            continue
        tile = np.ascontiguousarray(canvas[y : y + height, x : x + width])
        _draw_caption(tile, text)
        canvas[y : y + height, x : x + width] = tile
    return torch.from_numpy(canvas).permute(2, 0, 1).contiguous()


def _check_captions(captions: Sequence[str] | None, count: int, argument: str) -> list[str] | None:
    if captions is None:
        return None
    if isinstance(captions, str) or not isinstance(captions, Sequence):
        raise TypeError(f"`{argument}` must be a list of str, got {type(captions).__name__}")
    if len(captions) != count:
        raise ValueError(f"`{argument}` has {len(captions)} entries but there are {count} tiles to label")
    for text in captions:
        if not isinstance(text, str):
            raise TypeError(f"`{argument}` must hold only str, got {type(text).__name__}")
    return list(captions)


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
) -> Tensor:
    """Blend colour-mapped maps over their images and tile them into one picture.

    Per tile: ``(1 - alpha) * to_display(image) + alpha * colorize(map)``, quantised to ``round(255 x)``;
    tiles are laid out by ``torchvision.utils.make_grid`` (black padding). All of this runs on the inputs'
    device; only the finished ``uint8`` grid moves to the CPU, where the captions are drawn.

    Args:
        images: ``[B, C, H, W]`` network inputs (see :func:`to_display` for ``C`` and ``mean``/``std``).
        maps: ``[B, h, w]`` (or ``[B, 1, h, w]``) maps in [0, 1], same device; resized bilinearly to
            ``(H, W)`` when their size differs.
        alpha: weight of the colour map in the blend, in [0, 1].
        colormap: an OpenCV colour map name (see :func:`colormap_names`).
        mean: per-channel mean that normalised ``images``; with ``std``, undone for display.
        std: per-channel standard deviation that normalised ``images``.
        nrow: tiles per grid row; default ``ceil(sqrt(B))``.
        captions: ``B`` short ASCII strings (e.g. ``"y=3 p=5 0.82"``), each written in white on a dark band
            at the top of its tile, font scaled to the tile; an empty string leaves its tile bare. ``None``
            draws nothing.
        pad: padding in pixels between and around tiles (none for a single tile, as in ``make_grid``).

    Returns:
        uint8 ``[3, H', W']`` RGB on the CPU, ready for :class:`~cam_callback.sinks.Sink.add_image`.
    """
    maps = _maps_3d(maps)
    if images.ndim != 4:
        raise ValueError(f"`images` must be [B, C, H, W], got shape {tuple(images.shape)}")
    if images.shape[0] != maps.shape[0]:
        raise ValueError(f"`images` has {images.shape[0]} samples but `maps` has {maps.shape[0]}")
    count, _, height, width = images.shape
    nrow = _default_nrow(count, nrow)
    pad = _check_pad(pad)
    texts = _check_captions(captions, count, "captions")
    maps = upsample_maps(maps.float(), (height, width))
    tiles = _to_uint8(blend(to_display(images, mean, std), colorize(maps, colormap), alpha))
    grid = _grid(tiles, nrow, pad)
    if texts is None:
        return grid
    return _caption(grid, _tile_origins(count, nrow, height, width, pad), (height, width), texts)


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
    count, _, height, width = images.shape
    nrow = _default_nrow(count, nrow)
    pad = _check_pad(pad)
    texts = _check_captions(captions, count, "captions")
    grid = _grid(_to_uint8(_three_channels(images.float().clamp(0, 1))), nrow, pad)
    if texts is None:
        return grid
    return _caption(grid, _tile_origins(count, nrow, height, width, pad), (height, width), texts)


def heatmap_grid(
    maps: Tensor,
    *,
    colormap: str = "jet",
    nrow: int | None = None,
    pad: int = 2,
) -> Tensor:
    """Tile colour-mapped maps, without images.

    Args:
        maps: ``[B, H, W]`` (or ``[B, 1, H, W]``) maps in [0, 1] on any device.
        colormap: an OpenCV colour map name (see :func:`colormap_names`).
        nrow: tiles per grid row; default ``ceil(sqrt(B))``.
        pad: padding in pixels between and around tiles.

    Returns:
        uint8 ``[3, H', W']`` RGB on the CPU.
    """
    maps = _maps_3d(maps)
    nrow = _default_nrow(maps.shape[0], nrow)
    return _grid(_to_uint8(colorize(maps, colormap)), nrow, _check_pad(pad))


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
) -> Tensor:
    """How each sample's map changed over training: one row per sample, one column per validation.

    Args:
        frames: ``[T, B, h, w]`` maps in [0, 1], ``T`` validations (oldest first) of ``B`` samples.
        colormap: an OpenCV colour map name (see :func:`colormap_names`).
        images: optional ``[B, C, H, W]`` network inputs, shown as an extra first column; the maps are then
            resized bilinearly to ``(H, W)``.
        mean: per-channel normalisation mean of ``images`` (see :func:`to_display`).
        std: per-channel normalisation standard deviation of ``images``.
        alpha: with ``images``, blend each map over its image with this weight; ``None`` (default) shows
            the plain colour-mapped maps.
        column_captions: one label per column (``T``, or ``T + 1`` with ``images``), e.g. ``"epoch 3"``,
            drawn on the tiles of the first row; an empty string leaves a tile bare.
        pad: padding in pixels between and around tiles.

    Returns:
        uint8 ``[3, B * (H + pad) + pad, K * (W + pad) + pad]`` RGB on the CPU, ``K`` the number of
        columns (a single tile comes unpadded).
    """
    if frames.ndim != 4:
        raise ValueError(f"`frames` must be [T, B, h, w], got shape {tuple(frames.shape)}")
    steps, count = frames.shape[:2]
    pad = _check_pad(pad)
    frames = frames.float()
    height, width = frames.shape[-2:]
    columns: list[Tensor] = []  # each [B, 3, H, W] uint8
    shown: Tensor | None = None
    if images is not None:
        if images.ndim != 4 or images.shape[0] != count:
            raise ValueError(
                f"`images` must be [B, C, H, W] with B={count} (from `frames`), "
                f"got shape {tuple(images.shape)}"
            )
        height, width = images.shape[-2:]
        shown = to_display(images, mean, std)
        columns.append(_to_uint8(shown))
    elif alpha is not None:
        raise ValueError("`alpha` blends maps over `images`; give `images` too or leave `alpha` as None")
    flat = upsample_maps(frames.reshape(steps * count, *frames.shape[-2:]), (height, width))
    heat = colorize(flat, colormap).view(steps, count, 3, height, width)
    for t in range(steps):
        tile = heat[t] if alpha is None or shown is None else blend(shown, heat[t], alpha)
        columns.append(_to_uint8(tile))
    tiles = torch.stack(columns, dim=1).flatten(0, 1)  # sample-major: row b holds sample b
    ncols = len(columns)
    grid = _grid(tiles, ncols, pad)
    texts = _check_captions(column_captions, ncols, "column_captions")
    if texts is None:
        return grid
    origins = _tile_origins(tiles.shape[0], ncols, height, width, pad)[:ncols]
    return _caption(grid, origins, (height, width), texts)
