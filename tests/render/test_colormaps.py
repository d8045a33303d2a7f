"""Colour maps: OpenCV's tables level for level, in RGB order, looked up by any spelling of their name."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch

from cam_callback.render.colormaps import colorize, colormap_lut, colormap_names

from .render_helpers import DEVICES, cv2_rgb


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
