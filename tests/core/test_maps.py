"""Normalisation and resizing of raw maps."""

from __future__ import annotations

import pytest
import torch

from cam_callback.core.maps import normalize_maps, upsample_maps


def test_normalize_hand_case() -> None:
    maps = torch.tensor([[[2.0, 4.0], [6.0, 10.0]]])
    # (x - 2) / (10 - 2)
    torch.testing.assert_close(normalize_maps(maps), torch.tensor([[[0.0, 0.25], [0.5, 1.0]]]))


@pytest.mark.parametrize("scale", [1e-9, 1e9])
def test_normalize_is_free_of_scale(scale: float) -> None:
    maps = torch.rand(3, 7, 5, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(normalize_maps(maps * scale), normalize_maps(maps))


def test_constant_maps_become_zeros_per_image() -> None:
    maps = torch.stack([torch.full((4, 4), 3.0), torch.zeros(4, 4), torch.arange(16.0).reshape(4, 4)])
    out = normalize_maps(maps)
    assert not torch.isnan(out).any()
    assert torch.equal(out[0], torch.zeros(4, 4))
    assert torch.equal(out[1], torch.zeros(4, 4))
    torch.testing.assert_close(out[2], torch.arange(16.0).reshape(4, 4) / 15)


@pytest.mark.parametrize("dtype", [torch.float64, torch.bfloat16, torch.float16])
def test_normalize_returns_float32_in_unit_range(dtype: torch.dtype) -> None:
    maps = (torch.randn(2, 6, 6, generator=torch.Generator().manual_seed(2)) * 50).to(dtype)
    out = normalize_maps(maps)
    assert out.dtype == torch.float32
    assert out.shape == (2, 6, 6)
    assert out.min() >= 0 and out.max() <= 1
    for image in out:
        assert image.min() == 0 and image.max() == 1


def test_normalize_does_not_modify_its_input() -> None:
    maps = torch.tensor([[[1.0, 3.0]]])
    normalize_maps(maps)
    assert torch.equal(maps, torch.tensor([[[1.0, 3.0]]]))


def test_upsample_bilinear_hand_case() -> None:
    # align_corners=False, 2 -> 4: sample points at -0.25 (clamped to 0), 0.25, 0.75, 1.25 (clamped to 1).
    maps = torch.tensor([[[0.0, 4.0]]])
    out = upsample_maps(maps, (1, 4))
    torch.testing.assert_close(out, torch.tensor([[[0.0, 1.0, 3.0, 4.0]]]))


def test_upsample_shape_and_same_size_passthrough() -> None:
    maps = torch.rand(2, 3, 5)
    assert upsample_maps(maps, (12, 20)).shape == (2, 12, 20)
    assert torch.equal(upsample_maps(maps, (3, 5)), maps)


def test_a_map_holding_nan_or_inf_becomes_all_nan_and_the_others_are_untouched() -> None:
    good = torch.tensor([[0.0, 2.0], [4.0, 8.0]])
    with_nan = torch.tensor([[1.0, float("nan")], [0.0, 3.0]])
    with_inf = torch.tensor([[1.0, float("inf")], [0.0, 3.0]])
    out = normalize_maps(torch.stack([good, with_nan, with_inf]))
    torch.testing.assert_close(out[0], good / 8)  # (x - 0) / (8 - 0)
    assert torch.isnan(out[1]).all() and torch.isnan(out[2]).all()
