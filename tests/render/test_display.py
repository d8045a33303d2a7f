"""Display images: normalisation undone (or min-max per image), RGB, blended with colour; saliency shown."""

from __future__ import annotations

import math

import pytest
import torch

from cam_callback.render.display import blend, saliency_to_image, to_display

from .render_helpers import DEVICES


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


def test_saliency_to_image_hand_values() -> None:
    ramp = torch.tensor([0.0, 1.0, 2.0, 3.0]).view(1, 1, 2, 2)  # mean 1.5, population std sqrt(1.25)
    expected = 0.5 + 0.1 * (ramp - 1.5) / math.sqrt(1.25)
    torch.testing.assert_close(saliency_to_image(ramp), expected)
    constant = torch.full((1, 3, 2, 2), -7.0)
    torch.testing.assert_close(saliency_to_image(constant), torch.full((1, 3, 2, 2), 0.5))
    spike = torch.zeros(1, 1, 10, 10)
    spike[0, 0, 0, 0] = 1.0  # mean 0.01, std sqrt(0.01 * 0.99): the spike is 9.95 std away
    image = saliency_to_image(spike)
    assert image[0, 0, 0, 0] == 1.0  # clipped
    torch.testing.assert_close(image[0, 0, 5, 5], torch.tensor(0.5 - 0.1 * 0.01 / math.sqrt(0.0099)))
    # Per image, free of scale.
    pair = torch.cat([ramp, ramp * 1e6])
    torch.testing.assert_close(saliency_to_image(pair)[0], saliency_to_image(pair)[1])
