"""Box outlines: inside each box, as thick as asked (or about 1 % of the tile), never for an empty box."""

from __future__ import annotations

import pytest
import torch

from cam_callback.render import overlay_grid
from cam_callback.render.boxes import BOX_COLORS, draw_boxes


def _outline(height: int, width: int, box: tuple[int, int, int, int], line: int) -> torch.Tensor:
    """The pixels of a ``line``-wide outline just inside ``box`` (x2, y2 exclusive), written out."""
    x1, y1, x2, y2 = box
    out = torch.zeros(height, width, dtype=torch.bool)
    for y in range(y1, y2):
        for x in range(x1, x2):
            out[y, x] = x < x1 + line or x >= x2 - line or y < y1 + line or y >= y2 - line
    return out


def test_a_two_pixel_outline_in_every_channel_and_nothing_else():
    tiles = torch.full((1, 3, 10, 12), 7, dtype=torch.uint8)
    out = draw_boxes(tiles, torch.tensor([[2.0, 1.0, 10.0, 9.0]]), color=(200, 100, 50), thickness=2)
    expected = _outline(10, 12, (2, 1, 10, 9), 2)
    # rows 1, 2, 7, 8 (8 wide); columns 2, 3, 8, 9 between them (4 tall)
    assert int(expected.sum()) == 2 * 8 * 2 + 2 * 4 * 2
    for channel, value in enumerate((200, 100, 50)):
        assert torch.equal(out[0, channel] == value, expected)
        assert bool((out[0, channel][~expected] == 7).all())
    assert bool((tiles == 7).all())  # a copy: the tiles given are left alone


def test_the_default_line_is_about_one_percent_of_the_tile():
    # A 300 x 200 tile: 1 % of its longer side is 3 pixels; a 20-pixel one gets the minimum, 1.
    big = draw_boxes(torch.zeros(1, 3, 200, 300, dtype=torch.uint8), torch.tensor([[10.0, 10.0, 60.0, 60.0]]))
    assert torch.equal(big[0, 1] == 255, _outline(200, 300, (10, 10, 60, 60), 3))
    assert big[0, 0].sum() == 0 and big[0, 2].sum() == 0  # green, (0, 255, 0)
    small = draw_boxes(torch.zeros(1, 3, 20, 20, dtype=torch.uint8), torch.tensor([[2.0, 2.0, 8.0, 8.0]]))
    assert torch.equal(small[0, 1] == 255, _outline(20, 20, (2, 2, 8, 8), 1))


def test_corners_are_rounded_to_whole_pixels():
    out = draw_boxes(torch.zeros(1, 3, 8, 8, dtype=torch.uint8), torch.tensor([[0.6, 1.4, 6.2, 5.7]]),
                     thickness=1)
    assert torch.equal(out[0, 1] == 255, _outline(8, 8, (1, 1, 6, 6), 1))


@pytest.mark.parametrize(
    "box",
    [
        [3.0, 3.0, 3.0, 6.0],
        [3.0, 6.0, 6.0, 2.0],
        [float("nan"), 1.0, 5.0, 5.0],
        [1.0, 1.0, float("inf"), 5.0],
    ],
    ids=["no width", "upside down", "nan", "inf"],
)
def test_a_box_without_area_or_not_finite_is_not_drawn(box: list[float]):
    tiles = torch.zeros(2, 3, 8, 8, dtype=torch.uint8)
    out = draw_boxes(tiles, torch.tensor([box, [1.0, 1.0, 7.0, 7.0]]), thickness=1)
    assert out[0].sum() == 0
    assert torch.equal(out[1, 1] == 255, _outline(8, 8, (1, 1, 7, 7), 1))  # the other tile's box is drawn


def test_one_box_per_tile_or_an_error():
    with pytest.raises(ValueError, match=r"draw_boxes: tiles \(2, 3, 8, 8\) and boxes \(1, 4\) do not match"):
        draw_boxes(torch.zeros(2, 3, 8, 8, dtype=torch.uint8), torch.zeros(1, 4))
    with pytest.raises(ValueError, match=r"tiles \(3, 8, 8\) and boxes \(1, 4\)"):
        draw_boxes(torch.zeros(3, 8, 8, dtype=torch.uint8), torch.zeros(1, 4))


def test_box_sets_in_a_grid_take_the_colours_in_order():
    assert BOX_COLORS[:2] == ((0, 255, 0), (255, 255, 0))  # the ground truth green, the detection yellow
    images = torch.zeros(1, 3, 16, 16)
    truth, detected = torch.tensor([[1.0, 1.0, 8.0, 8.0]]), torch.tensor([[9.0, 9.0, 15.0, 15.0]])
    grid = overlay_grid(images, torch.zeros(1, 16, 16), alpha=0.0, mean=[0.0] * 3, std=[1.0] * 3,
                        boxes=[truth, None, detected])
    assert grid.shape == (3, 16, 16)  # one tile: no padding
    first, third = _outline(16, 16, (1, 1, 8, 8), 1), _outline(16, 16, (9, 9, 15, 15), 1)
    assert bool((grid[:, first] == torch.tensor([0, 255, 0])[:, None]).all())
    third_colour = torch.tensor(list(BOX_COLORS[2]))[:, None]  # the third set's colour
    assert bool((grid[:, third] == third_colour).all())
    assert grid[:, ~(first | third)].sum() == 0


def test_a_one_pixel_outline_with_exclusive_far_corners_and_an_empty_box():
    tiles = torch.zeros(2, 3, 6, 6, dtype=torch.uint8)
    boxes = torch.tensor([[1.0, 1.0, 5.0, 4.0], [0.0, 0.0, 0.0, 0.0]])
    out = draw_boxes(tiles, boxes, color=(10, 20, 30), thickness=1)
    painted = (out[0, 0] == 10).int()
    expected = torch.zeros(6, 6, dtype=torch.int)
    expected[1, 1:5] = expected[3, 1:5] = 1  # top and bottom rows (y2 = 4 exclusive)
    expected[1:4, 1] = expected[1:4, 4] = 1  # left and right columns (x2 = 5 exclusive)
    assert torch.equal(painted, expected)
    assert out[0, 1][painted.bool()].unique().tolist() == [20]
    assert out[1].sum() == 0  # an empty box draws nothing
    assert tiles.sum() == 0  # the input is not changed
