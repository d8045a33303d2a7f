"""Faithfulness numbers' pure parts: pixel ranking masks, curve areas, average drop, the blur baseline."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from cam_callback.core.faithfulness import (
    average_drop,
    blurred,
    curve_area,
    increase_in_confidence,
    top_pixels,
)


def test_top_pixels_cover_the_highest_first_in_equal_fractions():
    maps = torch.tensor([[[4.0, 3.0], [2.0, 1.0]]])
    masks = top_pixels(maps, steps=4)
    assert masks.shape == (5, 1, 2, 2)
    expected = [
        [[0, 0], [0, 0]], [[1, 0], [0, 0]], [[1, 1], [0, 0]], [[1, 1], [1, 0]], [[1, 1], [1, 1]],
    ]  # fmt: skip
    assert torch.equal(masks[:, 0], torch.tensor(expected, dtype=torch.float32))


def test_top_pixels_break_ties_by_position_and_round_the_counts():
    maps = torch.ones(1, 1, 3)  # three equal pixels, 2 steps: 0, round(1.5) = 2, 3 pixels
    masks = top_pixels(maps, steps=2)
    assert masks[:, 0, 0].tolist() == [[0, 0, 0], [1, 1, 0], [1, 1, 1]]


def test_curve_area_is_the_trapezoid_rule_over_0_1():
    assert float(curve_area(torch.tensor([[1.0], [0.5], [0.0]]))[0]) == pytest.approx(0.5)
    scores = torch.rand(9, 3, generator=torch.Generator().manual_seed(0))
    x = np.linspace(0, 1, 9)
    expected = [float(np.sum((scores[1:, i] + scores[:-1, i]).numpy() / 2 * np.diff(x))) for i in range(3)]
    torch.testing.assert_close(curve_area(scores), torch.tensor(expected), atol=1e-6, rtol=0)
    with pytest.raises(ValueError, match="2 points"):
        curve_area(torch.ones(1, 2))


def test_average_drop_and_increase_in_confidence_by_hand():
    full, masked = torch.tensor([0.8, 0.5, 0.2]), torch.tensor([0.4, 0.6, 0.2])
    assert float(average_drop(full, masked)) == pytest.approx((0.5 + 0 + 0) / 3)
    assert float(increase_in_confidence(full, masked)) == pytest.approx(1 / 3)


def test_blur_matches_a_2d_gaussian_convolution_with_reflected_borders():
    images = torch.rand(2, 3, 16, 12, generator=torch.Generator().manual_seed(1))
    x = torch.arange(11, dtype=torch.float32) - 5
    g = torch.exp(-(x**2) / 50)
    kernel = torch.outer(g, g) / torch.outer(g, g).sum()
    padded = F.pad(images, (5, 5, 5, 5), mode="reflect")
    expected = F.conv2d(padded, kernel.expand(3, 1, 11, 11), groups=3)
    torch.testing.assert_close(blurred(images), expected, atol=1e-5, rtol=0)
    constant = torch.full((1, 1, 4, 4), 0.3)  # smaller than the kernel: replicated borders, still constant
    torch.testing.assert_close(blurred(constant), constant)
