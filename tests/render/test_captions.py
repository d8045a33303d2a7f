"""Captions: drawn once as ink and blended into each tile, inside its tile, at most two fifths of it."""

from __future__ import annotations

from typing import Any

import cv2
import numpy as np
import pytest
import torch

from cam_callback.render import overlay_grid
from cam_callback.render.captions import caption_ink, caption_tiles, name_room, shorten

from .render_helpers import tile_origin

# How far OpenCV's own drawing of white text over a tile may stray from the ink composited over the tile once.
# OpenCV 5 blends each pixel of a glyph once from its coverage, so the two agree to rounding. OpenCV 4 strokes
# each glyph as a polyline of short anti-aliased segments (LineAA) and rounds to a whole level at every pass
# over a pixel; where segments meet or cross it passes several times, and its pixels drift from any single
# blend by about a level per pass (one segment drawn 1, 2, 3, 4 times over itself over random backgrounds:
# up to 1.45, 2.30, 3.04, 4.11 levels from the composite of its own ink; OpenCV 5's text: up to 0.5). The
# caption below reaches 3 on OpenCV 4.8 to 4.14, only on partly covered pixels (anti-aliased edges).
OPENCV_TEXT_DRIFT = 1 if int(cv2.__version__.split(".")[0]) >= 5 else 3


def _drawn_directly(
    tile: np.ndarray, text: str, band: int, scale: float, origin: tuple[int, int]
) -> np.ndarray:
    """Darken the band to 30 % and write white anti-aliased text over it with OpenCV, in one tile (HWC)."""
    out = tile.copy()
    out[:band] = (out[:band].astype(np.float32) * 0.3).astype(np.uint8)
    cv2.putText(out, text, origin, cv2.FONT_HERSHEY_SIMPLEX, scale, (255, 255, 255), 1, cv2.LINE_AA)
    drawn: np.ndarray = out
    return drawn


def _white_over_darkened(tile: np.ndarray, ink: np.ndarray) -> np.ndarray:
    """The band of ``tile`` (HWC) darkened to 30 %, then white composited over it with coverage ``ink`` (255 =
    full), in floating point and rounded once."""
    out = tile.copy()
    band = ink.shape[0]
    dark = (out[:band].astype(np.float32) * 0.3).astype(np.uint8).astype(np.float64)
    cover = ink.astype(np.float64)[..., None] / 255
    out[:band] = np.rint(dark * (1 - cover) + 255 * cover).astype(np.uint8)
    composite: np.ndarray = out
    return composite


def _caption_case() -> tuple[str, float, int, int, torch.Tensor, list[tuple[int, int]]]:
    """A caption on a 224-pixel tile: font scale 0.09 * 224 / (height + baseline of "Ag" at scale 1);
    margin round(0.02 * 224) = 4. Two tiles of random pixels in a grid, the second without caption."""
    (_, unit_height), unit_baseline = cv2.getTextSize("Ag", cv2.FONT_HERSHEY_SIMPLEX, 1.0, 1)
    scale = 0.09 * 224 / (unit_height + unit_baseline)
    (_, line_height), baseline = cv2.getTextSize("Ag", cv2.FONT_HERSHEY_SIMPLEX, scale, 1)
    band = line_height + baseline + 2 * 4
    tiles = torch.randint(
        0, 256, (3, 2 * 224 + 6, 224 + 4), dtype=torch.uint8, generator=torch.Generator().manual_seed(1)
    )
    return "y=3 p=5 0.82", scale, line_height, band, tiles, [(2, 2), (228, 2)]


def test_ink_blended_over_a_tile_is_white_composited_over_the_darkened_band():
    text, scale, line_height, band, tiles, origins = _caption_case()
    ink = np.zeros((band, 224), dtype=np.uint8)
    cv2.putText(ink, text, (4, 4 + line_height), cv2.FONT_HERSHEY_SIMPLEX, scale, 255, 1, cv2.LINE_AA)
    assert np.array_equal(caption_ink(224, 224, text), ink)  # OpenCV's text, where and as large as intended
    hwc = tiles.permute(1, 2, 0).numpy().copy()
    expected = hwc.copy()
    expected[2:226, 2:226] = _white_over_darkened(hwc[2:226, 2:226], ink)
    out = caption_tiles(tiles.clone(), origins, (224, 224), [text, ""]).permute(1, 2, 0).numpy()
    # Exact on every OpenCV: the integer blend rounds as the floating-point composite does, and nothing
    # outside the captioned band (the second tile, the gaps) changes.
    assert np.array_equal(out, expected)


def test_ink_blended_over_a_tile_matches_drawing_on_it():
    text, scale, line_height, band, tiles, origins = _caption_case()
    hwc = tiles.permute(1, 2, 0).numpy().copy()
    expected = [
        _drawn_directly(hwc[y : y + 224, x : x + 224], text, band, scale, (4, 4 + line_height))
        for y, x in origins
    ]
    out = caption_tiles(tiles.clone(), origins, (224, 224), [text, ""]).permute(1, 2, 0).numpy()
    assert caption_ink(224, 224, text).shape == (band, 224)
    difference = np.abs(out[2:226, 2:226].astype(int) - expected[0].astype(int)).max(axis=2)
    ink = np.zeros((224, 224), dtype=np.uint8)
    ink[:band] = caption_ink(224, 224, text)
    edge = (ink > 0) & (ink < 255)
    # Unpainted and fully painted pixels are the same; anti-aliased edges within OpenCV's own rounding drift.
    assert difference[~edge].max() == 0
    assert difference[edge].max() <= OPENCV_TEXT_DRIFT
    assert np.array_equal(out[228:452, 2:226], hwc[228:452, 2:226])  # the empty caption leaves its tile alone


def test_each_caption_is_drawn_once_and_shared():
    caption_ink.cache_clear()
    grid = torch.zeros(3, 36, 70, dtype=torch.uint8)
    origins = [(2, 2), (2, 36)]
    for _ in range(3):  # three (layer, method) grids of one validation
        caption_tiles(grid.clone(), origins, (32, 32), ["a", "b"])
    info = caption_ink.cache_info()
    assert (info.misses, info.hits) == (2, 4)
    ink = caption_ink(32, 32, "a")
    assert not ink.flags.writeable  # shared between grids, so nobody may draw on it


def test_captions_change_pixels_only_inside_their_tiles():
    size, pad = 64, 2
    images = torch.full((4, 3, size, size), 0.5)
    maps = torch.zeros(4, size, size)
    kwargs: dict[str, Any] = dict(alpha=0.0, mean=[0.0] * 3, std=[1.0] * 3, nrow=2, pad=pad)
    plain = overlay_grid(images, maps, **kwargs)
    labelled = overlay_grid(images, maps, captions=["y=3 p=5 0.82", "", "cat", "y=1 p=1 0.99"], **kwargs)
    assert labelled.shape == plain.shape and labelled.dtype == torch.uint8
    changed = (labelled != plain).any(dim=0).numpy()

    inside = np.zeros_like(changed)
    for index in (0, 2, 3):
        y, x = tile_origin(index, 2, size, size, pad)
        tile_changed = changed[y : y + size, x : x + size]
        assert tile_changed.any(), f"caption {index} drew nothing"
        assert not tile_changed[size // 2 :].any(), "a caption reached the lower half of its tile"
        inside[y : y + size, x : x + size] = True
        # Readable: white text on a darkened band over a mid-grey tile.
        band = labelled[:, y : y + size // 2, x : x + size]
        assert (band.min(dim=0).values >= 200).any() and (band.max(dim=0).values <= 80).any()
    assert not (changed & ~inside).any(), "pixels changed outside captioned tiles (padding or bare tile)"


def test_long_caption_on_small_tile_stays_in_its_tile():
    images = torch.full((2, 3, 40, 40), 0.5)
    kwargs: dict[str, Any] = dict(alpha=0.0, mean=[0.0] * 3, std=[1.0] * 3, nrow=2)
    plain = overlay_grid(images, torch.zeros(2, 40, 40), **kwargs)
    captions = ["a very long caption indeed", ""]
    labelled = overlay_grid(images, torch.zeros(2, 40, 40), captions=captions, **kwargs)
    changed = (labelled != plain).any(dim=0)
    assert changed[2:18, 2:42].any()
    changed[2:18, 2:42] = False  # the band: at most 40 % of the 40-pixel tile, from its top
    assert not changed.any()


@pytest.mark.parametrize("size, band_limit", [(16, 0), (24, 0), (32, 12), (64, 25)])
def test_a_caption_covers_at_most_two_fifths_of_its_tile_or_is_left_out(size, band_limit):
    images = torch.full((1, 3, size, size), 0.5)
    kwargs: dict[str, Any] = dict(alpha=0.0, mean=[0.0] * 3, std=[1.0] * 3)
    plain = overlay_grid(images, torch.zeros(1, size, size), **kwargs)
    labelled = overlay_grid(images, torch.zeros(1, size, size), captions=["y=circle p=square 0.88"], **kwargs)
    rows = (labelled != plain).any(dim=0).any(dim=1).nonzero().flatten().tolist()
    assert (max(rows) + 1 if rows else 0) <= band_limit  # floor(0.4 * size) rows at most
    assert bool(rows) == (band_limit > 0)


def test_names_are_shortened_to_the_room_a_tile_has():
    assert shorten("circle", 8) == "circle"
    assert shorten("golden_retriever", 8) == "golden_."
    assert shorten("abc", 1) == "a."
    small, large = name_room(64, fixed=10), name_room(256, fixed=10)
    assert small == 3 and large > 3 * small
