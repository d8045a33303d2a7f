"""Captions drawn once as ink and blended into every grid: the same pixels as drawing them in each tile."""

from __future__ import annotations

import cv2
import numpy as np
import torch

from cam_callback.render.captions import caption_ink, caption_tiles


def _drawn_directly(
    tile: np.ndarray, text: str, band: int, scale: float, origin: tuple[int, int]
) -> np.ndarray:
    """Darken the band to 30 % and write white anti-aliased text over it with OpenCV, in one tile (HWC)."""
    out = tile.copy()
    out[:band] = (out[:band].astype(np.float32) * 0.3).astype(np.uint8)
    cv2.putText(out, text, origin, cv2.FONT_HERSHEY_SIMPLEX, scale, (255, 255, 255), 1, cv2.LINE_AA)
    drawn: np.ndarray = out
    return drawn


def test_ink_blended_over_a_tile_matches_drawing_on_it():
    # A 224-pixel tile: font scale 0.09 * 224 / (height + baseline of "Ag" at scale 1);
    # margin round(0.02 * 224) = 4.
    (_, unit_height), unit_baseline = cv2.getTextSize("Ag", cv2.FONT_HERSHEY_SIMPLEX, 1.0, 1)
    scale = 0.09 * 224 / (unit_height + unit_baseline)
    (_, line_height), baseline = cv2.getTextSize("Ag", cv2.FONT_HERSHEY_SIMPLEX, scale, 1)
    band = line_height + baseline + 2 * 4
    text = "y=3 p=5 0.82"
    tiles = torch.randint(
        0, 256, (3, 2 * 224 + 6, 224 + 4), dtype=torch.uint8, generator=torch.Generator().manual_seed(1)
    )
    origins = [(2, 2), (228, 2)]
    hwc = tiles.permute(1, 2, 0).numpy().copy()
    expected = [
        _drawn_directly(hwc[y : y + 224, x : x + 224], text, band, scale, (4, 4 + line_height))
        for y, x in origins
    ]
    out = caption_tiles(tiles.clone(), origins, (224, 224), [text, ""]).permute(1, 2, 0).numpy()
    assert caption_ink(224, 224, text).shape == (band, 224)
    difference = np.abs(out[2:226, 2:226].astype(int) - expected[0].astype(int))
    assert difference.max() <= 1  # integer rounding of the blend; OpenCV's own anti-aliasing agrees
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
