"""Grids: overlays, heat maps, histories and images tiled with padding, against OpenCV and make_grid."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest
import torch
from torchvision.utils import make_grid

from cam_callback.render import colorize, to_display
from cam_callback.render.grids import heatmap_grid, history_grid, image_grid, overlay_grid

from .render_helpers import DEVICES, constant_maps, cv2_rgb, tile_origin


@pytest.mark.parametrize("device", DEVICES)
def test_overlay_grid_shape_dtype_device(device):
    images = torch.rand(5, 3, 8, 8, device=device)
    maps = torch.rand(5, 8, 8, device=device)
    grid = overlay_grid(images, maps)
    # ceil(sqrt(5)) = 3 columns, 2 rows, tiles 8 px with 2 px padding around and between.
    assert grid.shape == (3, 2 * (8 + 2) + 2, 3 * (8 + 2) + 2)
    assert grid.dtype == torch.uint8 and grid.device.type == "cpu"


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_overlay_grid_on_cuda_matches_cpu():
    torch.manual_seed(2)
    images, maps = torch.randn(3, 3, 16, 16), torch.rand(3, 8, 8)
    kwargs: dict[str, Any] = dict(
        alpha=0.3, colormap="turbo", mean=[0.4] * 3, std=[0.2] * 3, captions=["a", "b", "c"]
    )
    on_cpu = overlay_grid(images, maps, **kwargs)
    on_cuda = overlay_grid(images.cuda(), maps.cuda(), **kwargs)
    assert on_cuda.device.type == "cpu"
    # Bilinear resizing may differ in the last float bit between devices: allow one level.
    assert (on_cuda.int() - on_cpu.int()).abs().max() <= 1


def test_overlay_grid_with_alpha_zero_is_the_image_grid():
    torch.manual_seed(1)
    levels = torch.randint(0, 256, (4, 3, 6, 6))
    pixels = levels.float() / 255
    mean, std = (0.5, 0.4, 0.3), (0.2, 0.25, 0.3)
    m, s = torch.tensor(mean).view(1, 3, 1, 1), torch.tensor(std).view(1, 3, 1, 1)
    grid = overlay_grid((pixels - m) / s, torch.rand(4, 6, 6), alpha=0.0, mean=mean, std=std, nrow=3)
    expected = make_grid(levels.to(torch.uint8), nrow=3, padding=2)
    assert torch.equal(grid, expected)


def test_overlay_grid_with_alpha_one_is_the_colour_map():
    levels = [0, 60, 200]
    maps = constant_maps(levels, 4)
    grid = overlay_grid(torch.rand(3, 3, 4, 4), maps, alpha=1.0, colormap="inferno", nrow=3)
    for index, level in enumerate(levels):
        y, x = tile_origin(index, 3, 4, 4, 2)
        tile = grid[:, y : y + 4, x : x + 4].permute(1, 2, 0).numpy()
        assert (tile == cv2_rgb(level, "inferno")).all()


def test_overlay_grid_blends_quantised_values():
    # Grey image 0.4, map level 255 of jet; alpha 0.5 -> round(255 * (0.5 * 0.4 + 0.5 * jet(255))).
    images = torch.full((1, 3, 2, 2), 0.4)
    grid = overlay_grid(images, torch.ones(1, 2, 2), alpha=0.5, mean=[0.0] * 3, std=[1.0] * 3)
    expected = np.round(255 * (0.5 * 0.4 + 0.5 * cv2_rgb(255).astype(np.float64) / 255))
    assert grid.shape == (3, 2, 2)  # a single tile comes without padding
    assert (grid.permute(1, 2, 0).numpy() == expected.astype(np.uint8)).all()


def test_overlay_grid_resizes_smaller_maps_to_the_images():
    grid = overlay_grid(torch.rand(2, 3, 8, 8), constant_maps([30, 220], 2), alpha=1.0, nrow=2)
    assert grid.shape == (3, 8 + 4, 2 * 10 + 2)
    y, x = tile_origin(1, 2, 8, 8, 2)
    assert (grid[:, y : y + 8, x : x + 8].permute(1, 2, 0).numpy() == cv2_rgb(220)).all()


def test_overlay_grid_checks_batch_and_captions():
    with pytest.raises(ValueError, match="samples"):
        overlay_grid(torch.rand(2, 3, 4, 4), torch.rand(3, 4, 4))
    with pytest.raises(ValueError, match="`captions` has 1 entries"):
        overlay_grid(torch.rand(2, 3, 4, 4), torch.rand(2, 4, 4), captions=["a"])
    with pytest.raises(ValueError, match="`nrow`"):
        overlay_grid(torch.rand(2, 3, 4, 4), torch.rand(2, 4, 4), nrow=0)


@pytest.mark.parametrize("device", DEVICES)
def test_heatmap_grid_against_opencv(device):
    levels = [10, 128, 250]
    grid = heatmap_grid(constant_maps(levels, 3).to(device), colormap="turbo", nrow=2, pad=1)
    assert grid.dtype == torch.uint8 and grid.device.type == "cpu"
    expected = np.zeros((2 * 4 + 1, 2 * 4 + 1, 3), dtype=np.uint8)  # 2 columns, 2 rows, black padding
    for index, level in enumerate(levels):
        y, x = tile_origin(index, 2, 3, 3, 1)
        expected[y : y + 3, x : x + 3] = cv2_rgb(level, "turbo")
    assert (grid.permute(1, 2, 0).numpy() == expected).all()


def test_heatmap_grid_default_columns():
    grid = heatmap_grid(torch.rand(10, 4, 4))
    columns = math.ceil(math.sqrt(10))  # 4 columns, 3 rows
    assert grid.shape == (3, 3 * 6 + 2, columns * 6 + 2)


def history_levels(steps: int, samples: int) -> list[list[int]]:
    return [[20 * (t + 1) + 100 * b for b in range(samples)] for t in range(steps)]


@pytest.mark.parametrize("device", DEVICES)
def test_history_grid_rows_are_samples_columns_are_validations(device):
    steps, samples, size, pad = 3, 2, 4, 2
    levels = history_levels(steps, samples)
    frames = torch.stack([constant_maps(row, size) for row in levels]).to(device)  # [T, B, h, w]
    grid = history_grid(frames, pad=pad)
    assert grid.shape == (3, samples * (size + pad) + pad, steps * (size + pad) + pad)
    for t in range(steps):
        for b in range(samples):
            y, x = pad + b * (size + pad), pad + t * (size + pad)
            tile = grid[:, y : y + size, x : x + size].permute(1, 2, 0).numpy()
            assert (tile == cv2_rgb(levels[t][b])).all(), (t, b)


def test_history_grid_with_images_in_the_first_column():
    steps, samples, size, pad = 2, 3, 4, 2
    levels = history_levels(steps, samples)
    frames = torch.stack([constant_maps(row, 2) for row in levels])  # maps smaller than the images
    colours = torch.tensor([[255, 0, 0], [0, 255, 0], [10, 20, 30]])
    images = (colours.float() / 255).view(samples, 3, 1, 1).expand(-1, -1, size, size)
    grid = history_grid(frames, images=images, mean=[0.0] * 3, std=[1.0] * 3, colormap="viridis", pad=pad)
    assert grid.shape == (3, samples * (size + pad) + pad, (steps + 1) * (size + pad) + pad)
    for b in range(samples):
        y = pad + b * (size + pad)
        first = grid[:, y : y + size, pad : pad + size].permute(1, 2, 0).numpy()
        assert (first == colours[b].numpy()).all()
        for t in range(steps):
            x = pad + (t + 1) * (size + pad)
            tile = grid[:, y : y + size, x : x + size].permute(1, 2, 0).numpy()
            assert (tile == cv2_rgb(levels[t][b], "viridis")).all(), (t, b)


def test_history_grid_blends_over_images_and_labels_columns():
    frames = constant_maps([255], 32).unsqueeze(1).expand(2, 1, 32, 32)  # T=2, B=1, level 255
    images = torch.full((1, 3, 32, 32), 0.4)
    kwargs: dict[str, Any] = dict(images=images, mean=[0.0] * 3, std=[1.0] * 3, alpha=0.5, pad=2)
    grid = history_grid(frames, **kwargs)
    expected = np.round(255 * (0.5 * 0.4 + 0.5 * cv2_rgb(255).astype(np.float64) / 255)).astype(np.uint8)
    x = 2 + 34  # second column
    assert (grid[:, 2:34, x : x + 32].permute(1, 2, 0).numpy() == expected).all()
    labelled = history_grid(frames, column_captions=["input", "", "epoch 2"], **kwargs)
    changed = (labelled != grid).any(dim=0)
    assert changed[2:34, 2:34].any() and changed[2:34, 70:102].any()
    assert not changed[:, 34:70].any()


def test_history_grid_validation():
    with pytest.raises(ValueError, match=r"\[T, B, h, w\]"):
        history_grid(torch.rand(2, 4, 4))
    with pytest.raises(ValueError, match="B=2"):
        history_grid(torch.rand(3, 2, 4, 4), images=torch.rand(3, 3, 4, 4))
    with pytest.raises(ValueError, match="`alpha`"):
        history_grid(torch.rand(3, 2, 4, 4), alpha=0.5)
    with pytest.raises(ValueError, match="`column_captions` has 2 entries"):
        history_grid(torch.rand(3, 2, 4, 4), column_captions=["a", "b"])


def test_image_grid_quantises_clips_and_repeats_grey_channels():
    # Two 1x2 grey images; values outside [0, 1] clip; one channel is repeated to RGB.
    images = torch.tensor([[[[0.0, 1.0]]], [[[0.5, 2.0]]]])  # [2, 1, 1, 2]
    grid = image_grid(images, nrow=2, pad=0)
    assert grid.dtype == torch.uint8 and grid.shape == (3, 1, 4)
    expected = torch.tensor([0, 255, 128, 255], dtype=torch.uint8)  # round(255 * 0.5) = 128
    for channel in range(3):
        assert torch.equal(grid[channel, 0], expected)


def test_image_grid_rejects_a_batch_without_channels():
    with pytest.raises(ValueError, match=r"\[B, C, H, W\]"):
        image_grid(torch.zeros(2, 4, 4))


# Grids sharing one validation's display images and colour-mapped maps give the same pixels ------------


def test_shared_display_images_and_heat_give_the_same_grids():
    generator = torch.Generator().manual_seed(0)
    images = torch.randn(4, 3, 12, 12, generator=generator)
    maps = torch.rand(4, 12, 12, generator=generator)
    shown = to_display(images, [0.5, 0.4, 0.3], [0.2, 0.2, 0.2])
    heat = colorize(maps, "turbo")
    options: dict[str, Any] = dict(
        alpha=0.3, colormap="turbo", mean=[0.5, 0.4, 0.3], std=[0.2, 0.2, 0.2], captions=list("abcd")
    )
    alone = overlay_grid(images, maps, **options)
    shared = overlay_grid(images, maps, **options, shown=shown, heat=heat)
    assert torch.equal(alone, shared)
    assert torch.equal(heatmap_grid(maps, colormap="turbo"), heatmap_grid(maps, colormap="turbo", heat=heat))
    # By hand for one pixel of tile 0 (padding 2): round(255 * (0.7 * shown + 0.3 * heat)).
    expected = (255 * (0.7 * shown[0, :, 0, 0] + 0.3 * heat[0, :, 0, 0])).round().to(torch.uint8)
    assert torch.equal(
        heatmap_grid(maps, colormap="turbo", heat=heat)[:, 2, 2],
        (255 * heat[0, :, 0, 0]).round().to(torch.uint8),
    )
    plain = overlay_grid(images, maps, alpha=0.3, colormap="turbo", mean=[0.5, 0.4, 0.3], std=[0.2, 0.2, 0.2])
    assert torch.equal(plain[:, 2, 2], expected)


def test_shared_heat_of_another_shape_is_refused():
    maps = torch.rand(2, 8, 8)
    with pytest.raises(ValueError, match="`heat`"):
        heatmap_grid(maps, heat=torch.rand(2, 3, 4, 4))
    with pytest.raises(ValueError, match="`heat`"):
        overlay_grid(torch.rand(2, 3, 8, 8), maps, heat=torch.rand(2, 3, 4, 4))
