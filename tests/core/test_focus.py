"""Focus numbers: concentration, border share and consistency against hand values and few-line references."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from cam_callback.core.focus import border_band, border_share, concentration, consistency, focus_numbers


def _maps(seed: int, shape: tuple[int, ...] = (5, 8, 8)) -> torch.Tensor:
    return torch.rand(*shape, generator=torch.Generator().manual_seed(seed))


# ---------------------------------------------------------------- concentration


def test_concentration_of_flat_and_one_pixel_maps() -> None:
    maps = torch.zeros(3, 4, 4)
    maps[0] = 2.0  # flat
    maps[1, 2, 3] = 5.0  # one pixel
    # maps[2] stays zero: looks nowhere in particular
    torch.testing.assert_close(concentration(maps), torch.tensor([0.0, 1.0, 0.0]))


def test_concentration_of_half_the_pixels() -> None:
    # Mass spread evenly on 8 of 16 pixels: H = log 8, so 1 - log 8 / log 16 = 1 - 3/4.
    maps = torch.zeros(1, 4, 4)
    maps[0, :2] = 1.0
    torch.testing.assert_close(concentration(maps), torch.tensor([0.25]))


def test_concentration_matches_numpy_entropy() -> None:
    maps = _maps(0)
    expected = []
    for m in maps.numpy():
        p = m.ravel() / m.sum()
        expected.append(1 - float(-(p * np.log(p)).sum()) / math.log(p.size))
    torch.testing.assert_close(concentration(maps), torch.tensor(expected), atol=1e-5, rtol=0)


# ---------------------------------------------------------------- border share


def test_border_band_width() -> None:
    band = border_band((20, 10))  # 10 % of 20 rows is 2, of 10 columns 1
    expected = torch.ones(20, 10, dtype=torch.bool)
    expected[2:18, 1:9] = False
    assert torch.equal(band, expected)
    assert border_band((4, 4))[1:3, 1:3].sum() == 0 and border_band((4, 4)).sum() == 12  # at least a pixel


def test_border_share_flat_centre_and_border() -> None:
    maps = torch.zeros(3, 10, 10)
    maps[0] = 1.0  # flat: no preference
    maps[1, 4:6, 4:6] = 1.0  # centre only
    maps[2, 0, :] = 1.0  # top row only: all the mass in a band of 36 of 100 pixels
    torch.testing.assert_close(border_share(maps), torch.tensor([1.0, 0.0, 100 / 36]))


def test_border_share_matches_loop() -> None:
    maps = _maps(1, (3, 10, 20))
    expected = []
    for m in maps:
        inside = m[1:9, 2:18].sum()  # 10 % of 10 rows is 1, of 20 columns 2
        share = float((m.sum() - inside) / m.sum())
        expected.append(share / ((200 - 8 * 16) / 200))
    torch.testing.assert_close(border_share(maps), torch.tensor(expected))


def test_border_share_of_zero_map_is_zero() -> None:
    assert float(border_share(torch.zeros(1, 6, 6))[0]) == 0.0


# ---------------------------------------------------------------- consistency


def _pearson(a: torch.Tensor, b: torch.Tensor) -> float:
    return float(torch.corrcoef(torch.stack([a.flatten().double(), b.flatten().double()]))[0, 1])


def test_consistency_of_maps_at_one_place_is_one_and_of_a_moving_peak_is_below_zero() -> None:
    same = torch.rand(1, 6, 6).expand(4, 6, 6).clone() + 0.1
    torch.testing.assert_close(consistency(same), torch.ones(4))
    # A peak at three different pixels of a 2x2 map: each map against the mean of the other two.
    # Map (1,0,0,0) centred: (.75,-.25,-.25,-.25); the others' mean (0,.5,.5,0) centred:
    # (-.25,.25,.25,-.25); dot = -.1875-.0625-.0625+.0625 = -.25; norms sqrt(.75) and sqrt(.25):
    # r = -.25 / (.866 * .5) = -1/sqrt(3).
    a = torch.zeros(3, 2, 2)
    a[0, 0, 0] = a[1, 0, 1] = a[2, 1, 0] = 1.0
    torch.testing.assert_close(consistency(a), torch.full((3,), -1 / math.sqrt(3)))


def test_consistency_per_class_matches_reference_and_skips_single_samples() -> None:
    maps = _maps(2, (7, 5, 5))
    labels = torch.tensor([0, 1, 0, 2, 1, 0, 1])  # class 2 has one sample: not counted
    expected = []
    for i in range(7):
        others = [j for j in range(7) if labels[j] == labels[i] and j != i]
        if others:
            expected.append(_pearson(maps[i], maps[others].mean(dim=0)))
    torch.testing.assert_close(consistency(maps, labels), torch.tensor(expected), atol=1e-6, rtol=0)


def test_consistency_empty_when_every_class_has_one_sample() -> None:
    assert consistency(_maps(3, (3, 4, 4)), torch.tensor([0, 1, 2])).numel() == 0
    assert math.isnan(focus_numbers(_maps(3, (3, 4, 4)), torch.tensor([0, 1, 2]))["consistency"])


def test_flat_maps_are_left_out_of_consistency() -> None:
    # A 1x1 layer's map upsampled is flat: it looks nowhere, so it neither counts nor makes others alike.
    maps = _maps(4, (4, 6, 6))
    maps[1] = 0.7
    maps[3] = 0.0
    expected = [_pearson(maps[0], maps[2]), _pearson(maps[2], maps[0])]
    torch.testing.assert_close(consistency(maps), torch.tensor(expected), atol=1e-6, rtol=0)
    assert consistency(torch.full((3, 5, 5), 0.4)).numel() == 0
    upsampled = torch.nn.functional.interpolate(torch.rand(3, 1, 1, 1), size=(7, 7), mode="bilinear")
    assert consistency(upsampled[:, 0]).numel() == 0


def test_maps_with_nan_are_left_out_of_the_focus_numbers_and_none_left_is_nan() -> None:
    maps = _maps(5, (4, 6, 6))
    labels = torch.tensor([0, 0, 1, 1])
    broken = maps.clone()
    broken[1, 2, 3] = float("nan")
    kept = focus_numbers(maps[[0, 2, 3]], labels[[0, 2, 3]])
    assert focus_numbers(broken, labels) == kept
    none_left = focus_numbers(torch.full((2, 6, 6), float("nan")))
    assert math.isnan(none_left["concentration"]) and math.isnan(none_left["border_share"])
    assert math.isnan(none_left["consistency"])


# ---------------------------------------------------------------- focus_numbers


def test_focus_numbers_are_the_means() -> None:
    maps = _maps(4, (4, 10, 10))
    labels = torch.tensor([0, 0, 1, 1])
    numbers = focus_numbers(maps, labels)
    assert set(numbers) == {"concentration", "border_share", "consistency"}
    assert numbers["concentration"] == pytest.approx(float(concentration(maps).mean()))
    assert numbers["border_share"] == pytest.approx(float(border_share(maps).mean()))
    assert numbers["consistency"] == pytest.approx(float(consistency(maps, labels).mean()))


@pytest.mark.parametrize("labels", [None, torch.zeros(4, 2, dtype=torch.long), torch.rand(4)])
def test_focus_numbers_without_class_labels_use_one_class(labels: torch.Tensor | None) -> None:
    maps = _maps(5, (4, 6, 6))
    assert focus_numbers(maps, labels)["consistency"] == pytest.approx(float(consistency(maps).mean()))
