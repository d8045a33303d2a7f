"""Grids that share one validation's display images and colour-mapped maps give the same pixels."""

from __future__ import annotations

from typing import Any

import pytest
import torch

from cam_callback.render import colorize, heatmap_grid, overlay_grid, to_display


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
