"""Captions drawn into the tiles of a grid with OpenCV: one line when it fits, shrunk, then wrapped."""

from __future__ import annotations

import functools
from collections.abc import Sequence

import cv2
import numpy as np
from torch import Tensor

__all__ = [
    "MAX_BAND_SHARE", "caption_ink", "caption_tiles", "check_captions", "name_room", "shorten", "wrap_text",
]

_FONT = cv2.FONT_HERSHEY_SIMPLEX


_MIN_SCALE = 0.3  # smallest font scale that stays legible (about 8 px tall)
MAX_BAND_SHARE = 0.4
"""A caption's band covers at most this share of its tile: lines that do not fit are left out, and a tile
too small for one line (under 30 px tall) gets no caption."""


def shorten(name: str, limit: int) -> str:
    """``name`` cut to ``limit`` characters, its last one a ``.`` when cut.

    ``"golden_retriever"`` at 8 is ``"golden_."``; at least one character and the dot are kept.
    """
    limit = max(2, limit)
    return name if len(name) <= limit else name[: limit - 1] + "."


def name_room(width: int, fixed: int, names: int = 2) -> int:
    """How many characters each of ``names`` names may have in a one-line caption of a ``width``-pixel tile.

    ``fixed`` is the number of other characters on the line (``"y= p= 0.88"`` has 10); measured in the
    smallest legible font (average letter width), the widest a caption gets before it wraps. At least 3.
    """
    letters = "abcdefghijklmnopqrstuvwxyz"
    char_width = cv2.getTextSize(letters, _FONT, _MIN_SCALE, 1)[0][0] / len(letters)
    margin = max(1, round(0.02 * width))
    fits = int((width - 2 * margin) // char_width)
    return max(3, (fits - fixed) // max(1, names))


def wrap_text(text: str, scale: float, thickness: int, room: int, font: int = _FONT) -> list[str]:
    """Split ``text`` at spaces into lines no wider than ``room`` pixels in OpenCV's ``font`` at ``scale``.

    A long word keeps its own line.
    """
    lines: list[str] = []
    for word in text.split():
        trial = f"{lines[-1]} {word}" if lines else word
        if lines and cv2.getTextSize(trial, font, scale, thickness)[0][0] <= room:
            lines[-1] = trial
        else:
            lines.append(word)
    return lines or [text]


@functools.lru_cache(maxsize=256)
def caption_ink(height: int, width: int, text: str) -> np.ndarray:
    """The ink of ``text`` drawn for a tile of ``height`` x ``width``: uint8 ``[band, width]``, 255 = ink.

    The font is about 9% of the tile's height (at least about 8 px); a caption too wide for the tile is first
    shrunk down to the smallest legible size, then wrapped at spaces. Whatever still overflows is clipped,
    and the band covers at most :data:`MAX_BAND_SHARE` of the tile (lines beyond it are left out; no line
    fits: an empty band). ``band`` is the height of the darkened band behind the text. Cached (read-only
    result): every (layer, method) grid of a validation has the same captions, so each is drawn once.
    """
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
        lines = wrap_text(text, scale, thickness, room)
    (_, line_height), baseline = cv2.getTextSize("Ag", _FONT, scale, thickness)
    step = line_height + baseline
    lines = lines[: max(0, int((MAX_BAND_SHARE * height - 2 * margin) // step))]
    # No line fits: too small a tile for a legible line that leaves the picture visible (an empty band).
    band = min(height, len(lines) * step + 2 * margin) if lines else 0
    ink = np.zeros((band, width), dtype=np.uint8)
    for row, line in enumerate(lines):
        origin = (margin, margin + line_height + row * step)
        cv2.putText(ink, line, origin, _FONT, scale, 255, thickness, cv2.LINE_AA)
    ink.setflags(write=False)
    return ink


def _draw_caption(tile: np.ndarray, text: str) -> None:
    """Write ``text`` in white over a darkened band at the top of ``tile`` (``[3, h, w]`` uint8, in place).

    The band is darkened to 30 %, then the ink of :func:`caption_ink` is blended in white over it.
    """
    ink = caption_ink(tile.shape[1], tile.shape[2], text)
    band = tile[:, : ink.shape[0]]
    dark = (band.astype(np.float32) * 0.3).astype(np.uint16)
    cover = ink.astype(np.uint16)
    band[:] = (dark * (255 - cover) + 255 * cover + 127) // 255


def caption_tiles(
    grid: Tensor, origins: list[tuple[int, int]], size: tuple[int, int], captions: Sequence[str]
) -> Tensor:
    """Draw each non-empty caption inside its own tile of a CPU uint8 ``[3, H', W']`` grid.

    The tiles have top-left corners ``origins`` and size ``size``. Draws in place when ``grid`` is
    contiguous (else into a contiguous copy) and returns the captioned grid.
    """
    height, width = size
    captioned = grid.contiguous()
    canvas = captioned.numpy()
    for (y, x), text in zip(origins, captions, strict=True):
        if text:
            _draw_caption(canvas[:, y : y + height, x : x + width], text)
    return captioned


def check_captions(captions: Sequence[str] | None, count: int, argument: str) -> list[str] | None:
    """``captions`` as a list of ``count`` strings (None stays None); the errors name ``argument``."""
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
