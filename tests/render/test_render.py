import math
from typing import Any

import cv2
import numpy as np
import pytest
import torch
from torchvision.utils import make_grid

from cam_callback.render import (
    blend,
    colorize,
    colormap_lut,
    colormap_names,
    heatmap_grid,
    history_grid,
    image_grid,
    overlay_grid,
    to_display,
)
from cam_callback.render.captions import name_room, shorten

DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


def cv2_rgb(level: int, colormap: str = "jet") -> np.ndarray:
    """Reference colour of one grey level straight from OpenCV, as RGB uint8."""
    code = getattr(cv2, f"COLORMAP_{colormap.upper()}")
    colour: np.ndarray = cv2.applyColorMap(np.array([[level]], dtype=np.uint8), code)[0, 0, ::-1].copy()
    return colour


def tile_origin(index: int, ncols: int, h: int, w: int, pad: int) -> tuple[int, int]:
    """Top-left pixel of tile ``index`` in a row-major grid of ``ncols`` columns with ``pad`` spacing."""
    row, col = divmod(index, ncols)
    return pad + row * (h + pad), pad + col * (w + pad)


def constant_maps(levels: list[int], size: int) -> torch.Tensor:
    """[B, size, size] maps, map b constant at levels[b] / 255."""
    return torch.tensor(levels, dtype=torch.float32).div(255).view(-1, 1, 1).expand(-1, size, size).clone()


# ----------------------------------------------------------------------------------------------- colour maps


@pytest.mark.parametrize("name", ["jet", "viridis", "turbo", "inferno", "bone"])
def test_colorize_matches_opencv_on_every_level(name):
    levels = np.arange(256, dtype=np.uint8).reshape(16, 16)
    code = getattr(cv2, f"COLORMAP_{name.upper()}")
    expected = cv2.applyColorMap(levels, code)[:, :, ::-1].astype(np.float32) / 255  # BGR -> RGB
    maps = torch.from_numpy(levels.astype(np.float32) / 255).unsqueeze(0)
    out = colorize(maps, name)
    assert out.shape == (1, 3, 16, 16) and out.dtype == torch.float32
    np.testing.assert_allclose(out[0].permute(1, 2, 0).numpy(), expected, atol=1e-7)


def test_jet_ends_are_dark_blue_and_dark_red_in_rgb_order():
    # Jet runs from dark blue (0, 0, ~0.5) to dark red (~0.5, 0, 0): a BGR/RGB swap would flip these.
    out = colorize(torch.tensor([[[0.0, 1.0]]]), "jet")[0, :, 0]
    np.testing.assert_allclose(out[:, 0].numpy(), [0, 0, 0.5], atol=0.01)
    np.testing.assert_allclose(out[:, 1].numpy(), [0.5, 0, 0], atol=0.01)


def test_colorize_rounds_and_clamps_to_levels():
    values = torch.tensor([[[10.4 / 255, 10.6 / 255, -0.5, 1.7, float("nan")]]])
    lut = colormap_lut("jet")
    out = colorize(values, "jet")[0, :, 0].T  # [5, 3]
    for column, level in enumerate([10, 11, 0, 255, 0]):
        torch.testing.assert_close(out[column], lut[level], rtol=0, atol=0)
        np.testing.assert_allclose(out[column].numpy() * 255, cv2_rgb(level), atol=1e-4)


@pytest.mark.parametrize("device", DEVICES)
def test_colorize_stays_on_device(device):
    maps = torch.rand(2, 5, 7, device=device)
    out = colorize(maps, "viridis")
    assert out.device.type == device and out.shape == (2, 3, 5, 7)
    assert colormap_lut("viridis", device).device.type == device


@pytest.mark.parametrize("variant", ["jet", "JET", "Jet", "COLORMAP_JET", "colormap_jet", " jet "])
def test_name_variants_share_one_cached_table(variant):
    assert colormap_lut(variant) is colormap_lut("jet", torch.device("cpu"))
    assert colormap_lut(variant).shape == (256, 3)


def test_colormap_names_come_from_opencv():
    names = colormap_names()
    expected = sorted(a[len("COLORMAP_") :].lower() for a in dir(cv2) if a.startswith("COLORMAP_"))
    assert names == expected
    assert {"jet", "viridis", "turbo", "inferno"} <= set(names)
    for name in names:  # every listed name is accepted
        assert colormap_lut(name).shape == (256, 3)


def test_unknown_colormap_lists_closest_names_first():
    with pytest.raises(ValueError, match=r"`colormap`: unknown 'virdis'") as info:
        colormap_lut("virdis")
    listed = str(info.value).split("closest first): ")[1].split(", ")
    assert listed[0] == "viridis"
    assert sorted(listed) == sorted(colormap_names())
    with pytest.raises(ValueError, match="valid") as info:
        colormap_lut("jte")
    assert str(info.value).split("closest first): ")[1].startswith("jet")


def test_colormap_type_error():
    with pytest.raises(TypeError, match="`colormap`"):
        colormap_lut(3)  # type: ignore[arg-type]


# ----------------------------------------------------------------------------------------------- display


@pytest.mark.parametrize("device", DEVICES)
def test_to_display_undoes_normalisation(device):
    torch.manual_seed(0)
    pixels = torch.rand(2, 3, 4, 5, device=device)
    mean, std = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
    m = torch.tensor(mean, device=device).view(1, 3, 1, 1)
    s = torch.tensor(std, device=device).view(1, 3, 1, 1)
    out = to_display((pixels - m) / s, mean, std)
    assert out.device.type == device and out.dtype == torch.float32
    torch.testing.assert_close(out, pixels, atol=1e-6, rtol=0)


def test_to_display_clamps_after_undoing():
    images = torch.tensor([-3.0, 0.5, 4.0]).view(1, 1, 1, 3)
    out = to_display(images, mean=[0.5], std=[0.25])  # -> -0.25, 0.625, 1.5
    torch.testing.assert_close(out[0, :, 0], torch.tensor([[0.0, 0.625, 1.0]] * 3))


def test_to_display_min_max_per_image():
    first = torch.tensor([2.0, 4.0, 6.0, 10.0]).view(1, 1, 2, 2).expand(1, 3, 2, 2)
    second = torch.tensor([-1.0, 0.0, 0.0, 1.0]).view(1, 1, 2, 2).expand(1, 3, 2, 2)
    out = to_display(torch.cat([first, second]))
    torch.testing.assert_close(out[0, 0], torch.tensor([[0.0, 0.25], [0.5, 1.0]]))
    torch.testing.assert_close(out[1, 0], torch.tensor([[0.0, 0.5], [0.5, 1.0]]))


def test_to_display_min_max_spans_all_channels():
    images = torch.zeros(1, 3, 1, 1)
    images[0, :, 0, 0] = torch.tensor([1.0, 2.0, 5.0])
    torch.testing.assert_close(to_display(images)[0, :, 0, 0], torch.tensor([0.0, 0.25, 1.0]))


def test_to_display_constant_image_is_black_not_nan():
    images = torch.cat([torch.full((1, 3, 3, 3), 7.0), torch.rand(1, 3, 3, 3)])
    out = to_display(images)
    assert not torch.isnan(out).any()
    assert torch.equal(out[0], torch.zeros(3, 3, 3))
    assert out[1].min() == 0 and out[1].max() == 1


def test_to_display_grey_is_repeated_to_rgb():
    images = torch.tensor([0.0, 0.5, 1.0]).view(1, 1, 1, 3)
    out = to_display(images)
    assert out.shape == (1, 3, 1, 3)
    for channel in range(3):
        torch.testing.assert_close(out[0, channel, 0], torch.tensor([0.0, 0.5, 1.0]))


def test_to_display_keeps_first_three_of_many_channels():
    images = torch.arange(4.0).view(1, 4, 1, 1) / 10  # channels 0.0, 0.1, 0.2, 0.3
    out = to_display(images, mean=[0.0] * 4, std=[1.0] * 4)
    torch.testing.assert_close(out[0, :, 0, 0], torch.tensor([0.0, 0.1, 0.2]))


def test_to_display_takes_one_number_for_every_channel():
    # `mean=0.5, std=0.2` used to fail with "'float' object is not iterable".
    images = torch.rand(2, 3, 4, 4)
    expected = to_display(images, mean=[0.5] * 3, std=[0.2] * 3)
    torch.testing.assert_close(to_display(images, mean=0.5, std=0.2), expected)
    torch.testing.assert_close(to_display(images, mean=[0.5], std=[0.2]), expected)


def test_to_display_validates_mean_and_std():
    images = torch.rand(1, 3, 2, 2)
    with pytest.raises(ValueError, match="`mean` has 2 values.*3 channel.*or a single number for all"):
        to_display(images, mean=[0.5, 0.5], std=[0.2, 0.2, 0.2])
    with pytest.raises(ValueError, match="`std` has 4 values"):
        to_display(images, mean=[0.5] * 3, std=[0.2] * 4)
    with pytest.raises(TypeError, match="`mean` must be a list of numbers"):
        to_display(images, mean="0.5", std=0.2)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="both or neither"):
        to_display(images, mean=[0.5] * 3)
    with pytest.raises(ValueError, match=r"\[B, C, H, W\]"):
        to_display(torch.rand(3, 2, 2))


def test_blend_arithmetic():
    images = torch.full((1, 3, 1, 2), 0.2)
    heat = torch.full((1, 3, 1, 2), 0.8)
    torch.testing.assert_close(blend(images, heat, 0.25), torch.full((1, 3, 1, 2), 0.35))  # .75*.2+.25*.8
    assert torch.equal(blend(images, heat, 0.0), images)
    assert torch.equal(blend(images, heat, 1), heat)


@pytest.mark.parametrize("alpha", [-0.1, 1.5, float("nan")])
def test_blend_rejects_alpha_outside_unit_interval(alpha):
    x = torch.zeros(1, 3, 1, 1)
    with pytest.raises(ValueError, match="`alpha` must be in"):
        blend(x, x, alpha)


def test_blend_rejects_mismatched_shapes():
    with pytest.raises(ValueError, match="same shape"):
        blend(torch.zeros(1, 3, 2, 2), torch.zeros(1, 3, 2, 3), 0.5)


# ----------------------------------------------------------------------------------------------- grids


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
