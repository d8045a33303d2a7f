"""Drift numbers: distances between maps, centres of mass, object masks and the scores on them."""

from __future__ import annotations

import math

import pytest
import torch

from cam_callback.core.drift import (
    as_masks,
    boxes_to_masks,
    centre_of_mass,
    cosine_distance,
    energy_in_mask,
    pointing_game,
    shrink_maps,
)

# ---------------------------------------------------------------- cosine_distance


def test_cosine_distance_of_identical_maps_is_zero() -> None:
    maps = torch.rand(3, 7, 5, generator=torch.Generator().manual_seed(0)) + 0.1
    out = cosine_distance(maps, maps.clone())
    assert out.shape == (3,)
    torch.testing.assert_close(out, torch.zeros(3), atol=1e-6, rtol=0)
    assert (out >= 0).all()


def test_cosine_distance_of_disjoint_maps_is_one() -> None:
    a = torch.zeros(2, 4, 4)
    b = torch.zeros(2, 4, 4)
    a[:, :2] = 1.0  # top half
    b[:, 2:] = 3.0  # bottom half
    torch.testing.assert_close(cosine_distance(a, b), torch.ones(2))


def test_cosine_distance_hand_pair() -> None:
    # Flattened: (3, 4, 0, 0) and (4, 3, 0, 0): cos = 24 / 25, so the distance is 1/25.
    a = torch.tensor([[[3.0, 4.0], [0.0, 0.0]]])
    b = torch.tensor([[[4.0, 3.0], [0.0, 0.0]]])
    torch.testing.assert_close(cosine_distance(a, b), torch.tensor([0.04]))
    # (1, 0, 0, 0) against (1, 1, 0, 0): cos = 1 / sqrt(2).
    c = torch.tensor([[[1.0, 0.0], [0.0, 0.0]]])
    d = torch.tensor([[[1.0, 1.0], [0.0, 0.0]]])
    torch.testing.assert_close(cosine_distance(c, d), torch.tensor([1 - 1 / math.sqrt(2)]))


def test_cosine_distance_is_per_sample_and_symmetric() -> None:
    a = torch.tensor([[[3.0, 4.0], [0.0, 0.0]], [[1.0, 0.0], [0.0, 0.0]]])
    b = torch.tensor([[[4.0, 3.0], [0.0, 0.0]], [[0.0, 0.0], [0.0, 2.0]]])
    expected = torch.tensor([0.04, 1.0])
    torch.testing.assert_close(cosine_distance(a, b), expected)
    torch.testing.assert_close(cosine_distance(b, a), expected)


@pytest.mark.parametrize("scale", [1e-6, 0.5, 7.0, 1e6])
def test_cosine_distance_ignores_scale(scale: float) -> None:
    generator = torch.Generator().manual_seed(3)
    a = torch.rand(4, 6, 6, generator=generator)
    b = torch.rand(4, 6, 6, generator=generator)
    torch.testing.assert_close(cosine_distance(a * scale, b), cosine_distance(a, b), atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(cosine_distance(a, b * scale), cosine_distance(a, b), atol=1e-6, rtol=1e-5)


def test_cosine_distance_zero_map_rules() -> None:
    zero = torch.zeros(1, 3, 3)
    some = torch.zeros(1, 3, 3)
    some[0, 1, 2] = 0.5
    assert cosine_distance(zero, zero).tolist() == [0.0]
    assert cosine_distance(zero, some).tolist() == [1.0]
    assert cosine_distance(some, zero).tolist() == [1.0]
    # Mixed in one batch, with no NaN leaking from the zero rows.
    a = torch.cat([zero, some, zero])
    b = torch.cat([zero, some, some])
    out = cosine_distance(a, b)
    assert not torch.isnan(out).any()
    torch.testing.assert_close(out, torch.tensor([0.0, 0.0, 1.0]), atol=1e-6, rtol=0)


def test_cosine_distance_accepts_half_precision() -> None:
    a = torch.tensor([[[3.0, 4.0], [0.0, 0.0]]], dtype=torch.float16)
    b = torch.tensor([[[4.0, 3.0], [0.0, 0.0]]], dtype=torch.bfloat16)
    out = cosine_distance(a, b)
    assert out.dtype == torch.float32
    torch.testing.assert_close(out, torch.tensor([0.04]), atol=1e-4, rtol=0)


# ---------------------------------------------------------------- centre_of_mass


def test_centre_of_mass_hot_pixel_maps_to_its_footprint_centre() -> None:
    # A 2x2 map over an 8x8 input: map pixel (0, 1) covers input rows 0..3 and columns 4..7.
    maps = torch.zeros(1, 2, 2)
    maps[0, 0, 1] = 1.0
    torch.testing.assert_close(centre_of_mass(maps, (8, 8)), torch.tensor([[1.5, 5.5]]))


def test_centre_of_mass_non_square_input() -> None:
    # A 2x4 map over a 6x12 input: each map pixel covers 3x3 input pixels.
    # Map pixel (1, 2) covers rows 3..5 (centre 4) and columns 6..8 (centre 7).
    maps = torch.zeros(1, 2, 4)
    maps[0, 1, 2] = 5.0
    torch.testing.assert_close(centre_of_mass(maps, (6, 12)), torch.tensor([[4.0, 7.0]]))


def test_centre_of_mass_in_map_pixels_without_input_size() -> None:
    maps = torch.zeros(1, 3, 5)
    maps[0, 2, 4] = 1.0
    torch.testing.assert_close(centre_of_mass(maps), torch.tensor([[2.0, 4.0]]))


def test_centre_of_mass_weighted_average() -> None:
    # Weight 1 at column 0 and 3 at column 3 of row 0: x = (0 * 1 + 3 * 3) / 4 = 2.25.
    maps = torch.zeros(1, 4, 4)
    maps[0, 0, 0] = 1.0
    maps[0, 0, 3] = 3.0
    torch.testing.assert_close(centre_of_mass(maps), torch.tensor([[0.0, 2.25]]))


def test_centre_of_mass_ignores_negative_values() -> None:
    maps = torch.zeros(1, 4, 4)
    maps[0, 0, 0] = 1.0
    maps[0, 3, 3] = -5.0
    torch.testing.assert_close(centre_of_mass(maps), torch.tensor([[0.0, 0.0]]))


def test_centre_of_mass_symmetric_and_zero_maps_sit_at_the_centre() -> None:
    symmetric = torch.zeros(4, 4)
    symmetric[0, 0] = symmetric[0, 3] = symmetric[3, 0] = symmetric[3, 3] = 2.0
    uniform = torch.ones(4, 4)
    zero = torch.zeros(4, 4)
    maps = torch.stack([symmetric, uniform, zero])
    # The centre of an 8x10 input, in pixel coordinates.
    expected = torch.tensor([[3.5, 4.5]] * 3)
    out = centre_of_mass(maps, (8, 10))
    assert not torch.isnan(out).any()
    torch.testing.assert_close(out, expected)


# ---------------------------------------------------------------- masks


def test_boxes_to_masks_end_is_exclusive() -> None:
    # (x1, y1, x2, y2) = (1, 0, 3, 2) on a 3x4 image: rows 0-1, columns 1-2.
    masks = boxes_to_masks(torch.tensor([[1, 0, 3, 2]]), (3, 4))
    expected = torch.tensor(
        [
            [
                [False, True, True, False],
                [False, True, True, False],
                [False, False, False, False],
            ]
        ]
    )
    assert masks.dtype == torch.bool
    assert torch.equal(masks, expected)


def test_boxes_to_masks_empty_and_overflowing_boxes() -> None:
    boxes = torch.tensor([[2.0, 2.0, 2.0, 3.0], [-1.0, -5.0, 10.0, 10.0], [3.0, 2.0, 4.0, 3.0]])
    masks = boxes_to_masks(boxes, (3, 4))
    assert not masks[0].any()  # zero width
    assert masks[1].all()  # clipped to the image
    assert masks[2].sum() == 1 and masks[2, 2, 3]  # the bottom-right pixel only


def test_as_masks_passes_boolean_masks_through() -> None:
    masks = torch.zeros(2, 5, 6, dtype=torch.bool)
    masks[0, 1:3, 2:4] = True
    out = as_masks(masks, (5, 6))
    assert out.dtype == torch.bool
    assert torch.equal(out, masks)


def test_as_masks_thresholds_float_masks_with_channel() -> None:
    masks = torch.tensor([[[[0.0, 0.4], [0.6, 1.0]]]])  # [1, 1, 2, 2]
    out = as_masks(masks, (2, 2))
    assert out.dtype == torch.bool
    assert torch.equal(out, torch.tensor([[[False, False], [True, True]]]))


def test_as_masks_integer_masks_become_boolean() -> None:
    masks = torch.tensor([[[0, 255], [1, 0]]], dtype=torch.uint8)
    assert torch.equal(as_masks(masks, (2, 2)), torch.tensor([[[False, True], [True, False]]]))


def test_as_masks_from_boxes() -> None:
    out = as_masks(torch.tensor([[1, 0, 3, 2]]), (3, 4))
    expected = torch.zeros(1, 3, 4, dtype=torch.bool)
    expected[0, 0:2, 1:3] = True
    assert torch.equal(out, expected)


@pytest.mark.parametrize(
    "shape", [(1, 2, 2), (1, 5, 7), (1, 1, 8, 4)], ids=["smaller", "other-aspect", "channel"]
)
def test_as_masks_of_another_size_are_refused_not_resized(shape: tuple[int, ...]) -> None:
    # Nearest-resizing a mask of another size (or aspect ratio) onto the image would score the maps against
    # a guessed object; it used to happen without a word.
    with pytest.raises(ValueError, match=r"do not match the 4x6 images; give masks of the images' size"):
        as_masks(torch.ones(shape), (4, 6))


def test_as_masks_rejects_other_shapes() -> None:
    with pytest.raises(ValueError, match=r"masks must be \[B, H, W\] or boxes \[B, 4\], got \(2, 3, 4, 4\)"):
        as_masks(torch.zeros(2, 3, 4, 4), (4, 4))
    with pytest.raises(ValueError, match=r"got \(2, 5\)"):
        as_masks(torch.zeros(2, 5), (4, 4))


# ---------------------------------------------------------------- energy and pointing game


def test_energy_in_mask_hand_values() -> None:
    maps = torch.tensor([[[1.0, 2.0], [3.0, 4.0]], [[0.0, 0.0], [0.0, 5.0]]])
    masks = torch.tensor([[[True, True], [False, False]], [[True, True], [True, False]]])
    # 3 / 10 of the first map is in the top row; none of the second map is off its bottom-right pixel.
    torch.testing.assert_close(energy_in_mask(maps, masks), torch.tensor([0.3, 0.0]))
    torch.testing.assert_close(energy_in_mask(maps, ~masks), torch.tensor([0.7, 1.0]))


def test_energy_in_mask_ignores_negative_values_and_zero_maps() -> None:
    maps = torch.tensor([[[-5.0, 1.0], [1.0, 0.0]], [[0.0, 0.0], [0.0, 0.0]]])
    masks = torch.tensor([[[True, True], [False, False]]] * 2)
    out = energy_in_mask(maps, masks)
    assert not torch.isnan(out).any()
    torch.testing.assert_close(out, torch.tensor([0.5, 0.0]))


def test_pointing_game_hits_and_misses() -> None:
    maps = torch.zeros(3, 4, 4)
    maps[0, 1, 1] = 1.0  # peak inside the box
    maps[0, 3, 3] = 0.5
    maps[1, 3, 3] = 1.0  # peak outside the box
    maps[1, 1, 1] = 0.5
    masks = boxes_to_masks(torch.tensor([[0, 0, 2, 2]] * 3), (4, 4))
    out = pointing_game(maps, masks)
    # The zero map (sample 2) has its argmax at (0, 0), inside the box, but still misses.
    assert out.tolist() == [1.0, 0.0, 0.0]


def test_pointing_game_accepts_float_masks() -> None:
    maps = torch.zeros(1, 2, 2)
    maps[0, 1, 0] = 1.0
    assert pointing_game(maps, torch.tensor([[[0.0, 0.0], [1.0, 0.0]]])).tolist() == [1.0]
    assert pointing_game(maps, torch.tensor([[[1.0, 1.0], [0.0, 1.0]]])).tolist() == [0.0]


# ---------------------------------------------------------------- shrink_maps


@pytest.mark.parametrize("shape", [(2, 32, 32), (1, 32, 20), (1, 5, 7)])
def test_shrink_maps_keeps_small_maps(shape: tuple[int, int, int]) -> None:
    maps = torch.rand(shape, generator=torch.Generator().manual_seed(4))
    assert torch.equal(shrink_maps(maps, 32), maps)


def test_shrink_maps_averages_two_by_two_blocks() -> None:
    i = torch.arange(64.0).view(64, 1)
    j = torch.arange(64.0).view(1, 64)
    big = (i + 64 * j).unsqueeze(0)  # [1, 64, 64]
    out = shrink_maps(big, 32)
    assert out.shape == (1, 32, 32)
    # Block (a, b) holds rows 2a, 2a+1 and columns 2b, 2b+1: its mean is (2a + 0.5) + 64 * (2b + 0.5).
    a = torch.arange(32.0).view(32, 1)
    b = torch.arange(32.0).view(1, 32)
    torch.testing.assert_close(out[0], (2 * a + 0.5) + 64 * (2 * b + 0.5))
    assert out[0, 0, 0] == 32.5 and out[0, 31, 31] == 62.5 + 64 * 62.5


def test_shrink_maps_keeps_the_aspect_ratio() -> None:
    maps = torch.rand(2, 64, 16, generator=torch.Generator().manual_seed(5))
    out = shrink_maps(maps, 32)
    assert out.shape == (2, 32, 8)
    torch.testing.assert_close(out, maps.view(2, 32, 2, 8, 2).mean(dim=(2, 4)))


@pytest.mark.parametrize(
    ("shape", "max_side", "expected"), [((40, 40), 32, (32, 32)), ((100, 3), 10, (10, 1))]
)
def test_shrink_maps_sides_never_exceed_max_side(
    shape: tuple[int, int], max_side: int, expected: tuple[int, int]
) -> None:
    out = shrink_maps(torch.rand(1, *shape, generator=torch.Generator().manual_seed(6)), max_side)
    assert tuple(out.shape[-2:]) == expected
