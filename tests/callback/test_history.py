"""The history of maps across validations and the drift scalars it returns."""

from __future__ import annotations

import io
import math
from typing import Any, cast

import pytest
import torch
from torch import Tensor

from cam_callback.callback.history import MAX_FRAMES, MapHistory, kept_ordinals


def blob(top: int, left: int, size: int = 2, shape: tuple[int, int] = (8, 8), value: float = 1.0) -> Tensor:
    """A ``[H, W]`` map that is ``value`` on a ``size`` x ``size`` square at (top, left), 0 elsewhere."""
    out = torch.zeros(shape)
    out[top : top + size, left : left + size] = value
    return out


def test_first_record_has_no_change_keys() -> None:
    history = MapHistory(max_side=4)
    scalars = history.record("layer4", "gradcam", blob(0, 0).unsqueeze(0), step=10)
    assert scalars == {}
    assert len(history) == 1


def test_second_record_compares_against_the_only_earlier_maps() -> None:
    # 8x8 maps kept as 4x4 (2x2 averages). a keeps 1 at small pixel (0, 0);
    # b keeps 3 at (0, 0) and 4 at (0, 1): cos = 3 / 5, so the change is 0.4.
    a = blob(0, 0).unsqueeze(0)
    b = (blob(0, 0, value=3.0) + blob(0, 2, value=4.0)).unsqueeze(0)
    history = MapHistory(max_side=4)
    history.record("l", "m", a, step=0)
    scalars = history.record("l", "m", b, step=1)
    assert set(scalars) == {"change_prev", "change_first", "shift_prev", "shift_first"}
    assert scalars["change_prev"] == pytest.approx(0.4, abs=1e-6)
    assert scalars["change_first"] == pytest.approx(0.4, abs=1e-6)
    # Centres (input pixels): a at x = 0.5; b at x = (3 * 0.5 + 4 * 2.5) / 7 = 11.5 / 7, same row.
    assert scalars["shift_prev"] == pytest.approx(11.5 / 7 - 0.5, abs=1e-5)
    assert scalars["shift_first"] == pytest.approx(8 / 7, abs=1e-5)


def test_third_record_separates_previous_and_first() -> None:
    history = MapHistory(max_side=32)
    first = blob(0, 0).unsqueeze(0)
    second = blob(2, 4).unsqueeze(0)  # moved 2 down, 4 right
    third = blob(2, 5).unsqueeze(0)  # then 1 more to the right
    history.record("l", "m", first, step=0)
    scalars = history.record("l", "m", second, step=1)
    assert scalars["change_prev"] == pytest.approx(1.0) and scalars["change_first"] == pytest.approx(1.0)
    assert scalars["shift_prev"] == pytest.approx(math.sqrt(2**2 + 4**2), abs=1e-5)
    assert scalars["shift_first"] == pytest.approx(math.sqrt(2**2 + 4**2), abs=1e-5)
    scalars = history.record("l", "m", third, step=2)
    assert scalars["shift_prev"] == pytest.approx(1.0, abs=1e-5)
    assert scalars["shift_first"] == pytest.approx(math.sqrt(2**2 + 5**2), abs=1e-5)
    # second and third overlap in one 2x1 column of the 2x2 blob: cos = 2 / 4.
    assert scalars["change_prev"] == pytest.approx(0.5, abs=1e-6)
    assert scalars["change_first"] == pytest.approx(1.0)
    # Back to the first maps: no change from the first, full change from the previous.
    scalars = history.record("l", "m", first, step=3)
    assert scalars["change_first"] == pytest.approx(0.0, abs=1e-6)
    assert scalars["shift_first"] == pytest.approx(0.0, abs=1e-5)
    assert scalars["change_prev"] == pytest.approx(1.0)
    assert scalars["shift_prev"] == pytest.approx(math.sqrt(2**2 + 5**2), abs=1e-5)


def test_shift_is_in_input_pixels_after_shrinking() -> None:
    # 64x64 maps stored as 8x8: a 8x8 blob moved by 16 pixels moves by 16 input pixels, not 2.
    history = MapHistory(max_side=8)
    history.record("l", "m", blob(0, 0, size=8, shape=(64, 64)).unsqueeze(0), step=0)
    scalars = history.record("l", "m", blob(16, 0, size=8, shape=(64, 64)).unsqueeze(0), step=1)
    assert history.frames()[("l", "m")].shape == (2, 1, 8, 8)
    assert scalars["shift_prev"] == pytest.approx(16.0, abs=1e-4)


def test_scalars_are_means_over_the_batch() -> None:
    history = MapHistory()
    history.record("l", "m", torch.stack([blob(0, 0), blob(0, 0)]), step=0)
    scalars = history.record("l", "m", torch.stack([blob(0, 0), blob(4, 0)]), step=1)
    # Sample 0 does not move (0, 0); sample 1 moves 4 pixels to disjoint support (4, 1).
    assert scalars["change_prev"] == pytest.approx(0.5, abs=1e-6)
    assert scalars["shift_prev"] == pytest.approx(2.0, abs=1e-5)


def test_each_layer_and_method_has_its_own_history() -> None:
    history = MapHistory()
    history.record("a", "gradcam", blob(0, 0).unsqueeze(0), step=0)
    assert history.record("a", "layercam", blob(4, 4).unsqueeze(0), step=0) == {}
    assert history.record("b", "gradcam", blob(4, 4).unsqueeze(0), step=0) == {}
    scalars = history.record("a", "gradcam", blob(0, 0).unsqueeze(0), step=1)
    assert scalars["change_prev"] == pytest.approx(0.0, abs=1e-6)
    assert history.steps("a", "gradcam") == [0, 1]
    assert history.steps("a", "layercam") == [0]


def test_mask_scores_only_with_masks() -> None:
    maps = torch.stack([blob(0, 0), blob(6, 6)])
    masks = torch.zeros(2, 8, 8, dtype=torch.bool)
    masks[:, 0:4, 0:4] = True  # both objects in the top-left quarter
    history = MapHistory(max_side=4)
    assert history.record("l", "m", maps, step=0) == {}
    scalars = history.record("l", "m", maps, step=1, masks=masks)
    assert "energy_in_mask" in scalars and "pointing_game" in scalars
    # Sample 0 lies wholly on its object, sample 1 wholly off it.
    assert scalars["energy_in_mask"] == pytest.approx(0.5)
    assert scalars["pointing_game"] == pytest.approx(0.5)
    assert "energy_in_mask" not in history.record("l", "m", maps, step=2)


def test_mask_scores_use_full_size_maps_and_accept_boxes() -> None:
    # A map with 3/4 of its mass in the box's single column 1 (before any shrinking).
    maps = torch.zeros(1, 8, 8)
    maps[0, 0, 1] = 3.0
    maps[0, 0, 0] = 1.0
    boxes = torch.tensor([[1, 0, 2, 8]])  # x in [1, 2), all rows
    scalars = MapHistory(max_side=2).record("l", "m", maps, step=0, masks=boxes)
    assert scalars == {"energy_in_mask": pytest.approx(0.75), "pointing_game": 1.0}


def test_mask_scores_refuse_masks_of_another_size() -> None:
    maps = blob(4, 4).unsqueeze(0)
    small = torch.tensor([[[[0.0, 0.0], [0.0, 1.0]]]])  # [1, 1, 2, 2] for 8x8 maps: used to be resized
    with pytest.raises(ValueError, match="masks of 2x2 do not match the 8x8 images"):
        MapHistory().record("l", "m", maps, step=0, masks=small)


def test_frames_shape_and_values() -> None:
    generator = torch.Generator().manual_seed(0)
    history = MapHistory(max_side=16)
    recorded = [torch.rand(2, 64, 48, generator=generator) for _ in range(3)]
    for step, maps in enumerate(recorded):
        history.record("l", "m", maps, step=step * 5)
    frames = history.frames()
    assert set(frames) == {("l", "m")}
    assert frames[("l", "m")].shape == (3, 2, 16, 12)
    for t, maps in enumerate(recorded):
        # Every stored pixel is the mean of a 4x4 block of the recorded map.
        torch.testing.assert_close(frames[("l", "m")][t], maps.view(2, 16, 4, 12, 4).mean(dim=(2, 4)))
    assert history.steps("l", "m") == [0, 5, 10]
    assert history.steps("missing", "m") == []
    assert len(history) == 3


def test_history_keeps_copies_of_small_maps() -> None:
    # Maps within max_side need no shrinking; later in-place edits by the caller must not reach the history.
    maps = blob(0, 0).unsqueeze(0)
    history = MapHistory(max_side=32)
    history.record("l", "m", maps, step=0)
    maps.zero_()
    assert torch.equal(history.frames()[("l", "m")][0], blob(0, 0).unsqueeze(0))


def test_frames_empty_history() -> None:
    history = MapHistory()
    assert history.frames() == {}
    assert len(history) == 0


def test_steps_returns_a_copy() -> None:
    history = MapHistory()
    history.record("l", "m", blob(0, 0).unsqueeze(0), step=3)
    history.steps("l", "m").append(99)
    assert history.steps("l", "m") == [3]


def _only_tensors_and_ints(value: Any) -> bool:
    if isinstance(value, dict):
        return all(isinstance(k, str) and _only_tensors_and_ints(v) for k, v in value.items())
    return isinstance(value, (Tensor, int))


def _round_trip(state: dict[str, Any]) -> dict[str, Any]:
    buffer = io.BytesIO()
    torch.save(state, buffer)
    buffer.seek(0)
    return cast(dict[str, Any], torch.load(buffer, weights_only=True))


def test_state_dict_round_trip_restores_frames_and_steps() -> None:
    generator = torch.Generator().manual_seed(1)
    history = MapHistory(max_side=8)
    for step in (4, 9):
        history.record("model.layer4", "gradcam", torch.rand(2, 16, 16, generator=generator), step=step)
        history.record("model.layer3", "gradcam++", torch.rand(2, 16, 16, generator=generator), step=step)
    state = history.state_dict()
    assert _only_tensors_and_ints(state)

    restored = MapHistory(max_side=8)
    restored.load_state_dict(_round_trip(state))
    original_frames = history.frames()
    restored_frames = restored.frames()
    assert set(restored_frames) == {("model.layer4", "gradcam"), ("model.layer3", "gradcam++")}
    for key, frames in original_frames.items():
        assert torch.equal(restored_frames[key], frames)
        assert restored.steps(*key) == [4, 9]
    assert len(restored) == 2

    # Recording continues as if nothing happened.
    maps = torch.rand(2, 16, 16, generator=generator)
    assert restored.record("model.layer4", "gradcam", maps, step=12) == pytest.approx(
        history.record("model.layer4", "gradcam", maps, step=12)
    )


def test_empty_state_dict_round_trip() -> None:
    restored = MapHistory(max_side=8)
    restored.load_state_dict(_round_trip(MapHistory(max_side=32).state_dict()))
    assert restored.frames() == {}
    assert restored.max_side == 8  # nothing saved to stay compatible with
    restored.load_state_dict({})
    assert len(restored) == 0


def test_load_state_dict_keeps_the_saved_map_size() -> None:
    # A run resumed with another history size still continues its saved history.
    history = MapHistory(max_side=4)
    history.record("l", "m", blob(0, 0).unsqueeze(0), step=0)
    restored = MapHistory(max_side=8)
    restored.load_state_dict(_round_trip(history.state_dict()))
    assert restored.max_side == 4
    scalars = restored.record("l", "m", blob(0, 0).unsqueeze(0), step=1)
    assert scalars["change_prev"] == pytest.approx(0.0, abs=1e-6)
    assert restored.frames()[("l", "m")].shape == (2, 1, 4, 4)


# Bounded: at most MAX_FRAMES frames per pair, the first, the latest and evenly spaced ones -----------------


def test_kept_ordinals_first_latest_and_evenly_spaced() -> None:
    assert kept_ordinals(0) == [] and kept_ordinals(1) == [0]
    assert kept_ordinals(12) == list(range(12))  # all while they fit
    assert kept_ordinals(13) == [0, 2, 4, 6, 8, 10, 12]
    assert kept_ordinals(20) == [0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 19]
    assert kept_ordinals(60) == [0, 8, 16, 24, 32, 40, 48, 56, 59]
    for count in range(1, 400):
        kept = kept_ordinals(count)
        assert len(kept) <= MAX_FRAMES and kept[0] == 0 and kept[-1] == count - 1
        spacing = {b - a for a, b in zip(kept[:-2], kept[1:-1], strict=True)}
        assert len(spacing) <= 1  # evenly spaced but for the latest
        assert set(kept_ordinals(count + 1)) <= set(kept) | {count}  # never needs a dropped frame back


def test_history_and_its_state_stay_bounded_however_many_validations() -> None:
    generator = torch.Generator().manual_seed(2)
    history = MapHistory(max_side=8)
    first = torch.rand(2, 8, 8, generator=generator)
    history.record("l", "m", first, step=0)
    sizes = []
    for step in range(1, 300):
        maps = torch.rand(2, 8, 8, generator=generator)
        previous = history.frames()[("l", "m")][-1]
        scalars = history.record("l", "m", maps, step=step * 10)
        # Drift still compares with the very first maps and the previous validation's.
        for name, reference in (("first", first), ("prev", previous)):
            cosine = torch.nn.functional.cosine_similarity(maps.flatten(1), reference.flatten(1))
            assert scalars[f"change_{name}"] == pytest.approx(float((1 - cosine).mean()), abs=1e-5)
        state = history.state_dict()
        sizes.append(sum(t.numel() * t.element_size() for group in ("maps", "steps", "ordinals")
                         for t in state[group].values()))
    assert len(history) <= MAX_FRAMES and history.recorded == 300
    assert history.steps("l", "m") == [10 * o for o in kept_ordinals(300)]
    assert torch.equal(history.frames()[("l", "m")][0], first)
    assert max(sizes) <= MAX_FRAMES * (2 * 8 * 8 * 4 + 16)  # 12 frames of 2x8x8 float32, a step and a number


def test_a_long_history_saved_before_the_bound_is_thinned_on_load() -> None:
    frames = torch.rand(40, 1, 4, 4)
    old_state = {"max_side": 4, "maps": {"l::m": frames}, "steps": {"l::m": torch.arange(40) * 3}}
    history = MapHistory(max_side=4)
    history.load_state_dict(old_state)
    assert history.steps("l", "m") == [3 * o for o in kept_ordinals(40)]
    assert torch.equal(history.frames()[("l", "m")], frames[kept_ordinals(40)])
    history.record("l", "m", torch.rand(1, 4, 4), step=120)
    assert history.recorded == 41 and history.steps("l", "m") == [3 * o for o in kept_ordinals(41)]


def test_clear_forgets_everything() -> None:
    history = MapHistory()
    history.record("l", "m", blob(0, 0).unsqueeze(0), step=0)
    history.clear()
    assert len(history) == 0 and history.recorded == 0 and history.frames() == {}
    assert history.record("l", "m", blob(0, 0).unsqueeze(0), step=5) == {}  # a first record again


def test_epochs_are_kept_beside_the_steps_and_survive_a_checkpoint():
    history = MapHistory(max_side=8)
    for step, epoch in ((0, -1), (5, 0), (11, 1)):
        history.record("l", "gradcam", torch.rand(2, 8, 8), step, epoch=epoch)
    assert history.steps("l", "gradcam") == [0, 5, 11] and history.epochs("l", "gradcam") == [-1, 0, 1]
    assert history.last_step == 11
    restored = MapHistory(max_side=8)
    restored.load_state_dict(history.state_dict())
    assert restored.epochs("l", "gradcam") == [-1, 0, 1]
    older = {k: v for k, v in history.state_dict().items() if k != "epochs"}  # saved before epochs were kept
    from_older = MapHistory(max_side=8)
    from_older.load_state_dict(older)
    assert from_older.epochs("l", "gradcam") == [-1, -1, -1]
    assert from_older.steps("l", "gradcam") == [0, 5, 11]
    assert MapHistory().last_step is None


def test_thinning_keeps_each_frames_own_epoch():
    history = MapHistory(max_side=4)
    for ordinal in range(20):
        history.record("l", "gradcam", torch.rand(1, 4, 4), 10 * ordinal, epoch=ordinal)
    kept = kept_ordinals(20)
    assert history.steps("l", "gradcam") == [10 * k for k in kept]
    assert history.epochs("l", "gradcam") == kept


def test_a_sample_with_a_nan_map_is_left_out_of_the_means() -> None:
    # Sample 0 moves from blob (0, 0) to blob (0, 4): no overlap, change 1, shift 4 input pixels.
    # Sample 1 stays: change 0, shift 0. Sample 2's second map is NaN: left out, so the means are of 0 and 1.
    first = torch.stack([blob(0, 0), blob(4, 4), blob(2, 2)])
    second = torch.stack([blob(0, 4), blob(4, 4), torch.full((8, 8), float("nan"))])
    masks = torch.stack([blob(0, 4), blob(0, 0), blob(0, 0)]).bool()
    history = MapHistory(max_side=8)
    history.record("l", "m", first, step=0)
    scalars = history.record("l", "m", second, step=1, masks=masks)
    assert scalars["change_prev"] == pytest.approx((1.0 + 0.0) / 2)
    assert scalars["shift_prev"] == pytest.approx((4.0 + 0.0) / 2)
    # Energy in mask: sample 0 all inside (1), sample 1 none (0); pointing game: a hit and a miss.
    assert scalars["energy_in_mask"] == pytest.approx(0.5)
    assert scalars["pointing_game"] == pytest.approx(0.5)


def test_numbers_with_no_finite_sample_are_nan_not_zero_or_one() -> None:
    history = MapHistory(max_side=8)
    history.record("l", "m", blob(0, 0).unsqueeze(0), step=0)
    nan = torch.full((1, 8, 8), float("nan"))
    scalars = history.record("l", "m", nan, step=1, masks=blob(0, 0)[None] > 0)
    assert set(scalars) == {"change_prev", "change_first", "shift_prev", "shift_first", "energy_in_mask",
                            "pointing_game"}
    assert all(math.isnan(value) for value in scalars.values())
    # The next validation's change against that NaN frame is NaN again; against the first, it counts.
    scalars = history.record("l", "m", blob(0, 0).unsqueeze(0), step=2)
    assert math.isnan(scalars["change_prev"])
    assert scalars["change_first"] == pytest.approx(0.0)
