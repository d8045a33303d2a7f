"""Small inputs shown enlarged by a whole factor; pixels repeated, so nothing computed changes."""

from __future__ import annotations

import torch

from cam_callback.render.enlarge import display_factor, enlarge_images, enlarge_maps


def test_the_smallest_whole_factor_that_reaches_the_minimum():
    assert display_factor(64, 64, 128) == 2
    assert display_factor(16, 20, 128) == 8
    assert display_factor(50, 80, 128) == 3  # 150 >= 128, 100 would not be
    assert display_factor(224, 224, 128) == 1 and display_factor(16, 16, 0) == 1


def test_many_tiles_are_enlarged_only_as_far_as_the_grid_budget_allows():
    # 2**20 pixels: 16 tiles of 64x64 may grow 2x (16 * 128**2 = 2**18); 256 tiles of 32x32 only 2x
    # (256 * 64**2 = 2**20), not the 4x that 128 px would want; 1024 tiles of 32x32 not at all.
    assert display_factor(64, 64, 128, count=16) == 2
    assert display_factor(32, 32, 128, count=256) == 2
    assert display_factor(32, 32, 128, count=1024) == 1
    assert display_factor(32, 32, 128, count=4096) == 1  # never below 1


def test_images_repeat_each_pixel_and_maps_keep_their_values_at_the_centres():
    images = torch.arange(12, dtype=torch.uint8).reshape(1, 3, 2, 2)
    big = enlarge_images(images, 3)
    assert big.shape == (1, 3, 6, 6)
    assert torch.equal(big[:, :, ::3, ::3], images) and torch.equal(big[:, :, 2::3, 2::3], images)
    maps = torch.tensor([[[0.0, 1.0], [0.5, 0.25]]])
    assert enlarge_maps(maps, 1) is maps
    assert enlarge_maps(maps, 4).shape == (1, 8, 8)
    assert enlarge_maps(maps, 4)[0, 0, 0] == 0.0 and enlarge_maps(maps, 4)[0, 0, 7] == 1.0
