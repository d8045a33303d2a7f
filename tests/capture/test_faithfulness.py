"""The faithfulness forwards: numbers against a few-line loop, chunk sizes, and an invisible run."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from cam_callback.capture.faithfulness import faithfulness_numbers, forward_count
from cam_callback.core.faithfulness import blurred

NAMES = ("deletion", "insertion", "average_drop", "increase_in_confidence")


def _model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Flatten(), nn.Linear(2 * 3 * 3, 3), nn.Dropout(0.5))


def _reference(model: nn.Module, x: torch.Tensor, m: torch.Tensor, c: torch.Tensor, steps: int) -> dict:
    """Deletion / insertion / average drop / increase in confidence, one image and one step at a time."""
    model.eval()

    def p(image: torch.Tensor, i: int) -> float:
        return float(model(image[None]).softmax(dim=1)[0, c[i]])

    out: dict[str, list[float]] = {name: [] for name in NAMES}
    base = blurred(x)
    for i in range(len(x)):
        order = sorted(range(9), key=lambda j: (-float(m[i].flatten()[j]), j))
        deleted, inserted = [], []
        for k in range(steps + 1):
            top = torch.zeros(9)
            top[order[: round(k * 9 / steps)]] = 1
            top = top.view(1, 3, 3)
            deleted.append(p(x[i] * (1 - top), i))
            inserted.append(p(base[i] * (1 - top) + x[i] * top, i))
        out["deletion"].append(_trapezoid(deleted, 1 / steps))
        out["insertion"].append(_trapezoid(inserted, 1 / steps))
        full, masked = p(x[i], i), p(x[i] * m[i], i)
        out["average_drop"].append(max(0.0, full - masked) / full)
        out["increase_in_confidence"].append(float(masked > full))
    return {name: sum(v) / len(v) for name, v in out.items()}


def _trapezoid(values: list[float], dx: float) -> float:
    """The area under equally spaced ``values`` by the trapezoid rule (numpy < 2 has no np.trapezoid)."""
    return sum((values[i] + values[i + 1]) / 2 * dx for i in range(len(values) - 1))


@pytest.mark.parametrize("chunk_size", [1, 5, 64])
def test_numbers_match_a_loop_over_images_and_steps(chunk_size):
    generator = torch.Generator().manual_seed(3)
    x = torch.randn(4, 2, 3, 3, generator=generator)
    m = torch.rand(4, 3, 3, generator=generator)
    c = torch.tensor([0, 2, 1, 2])
    model = _model()
    got = faithfulness_numbers(model, x, {("l", "m"): m}, c, NAMES, chunk_size=chunk_size, steps=3)
    with torch.no_grad():
        expected = _reference(model, x, m, c, steps=3)
    assert set(got) == {("l", "m")}
    for name in NAMES:
        assert got["l", "m"][name] == pytest.approx(expected[name], abs=1e-6), name


def test_only_the_asked_numbers_and_an_invisible_run():
    model = _model().train()
    x, maps = torch.randn(3, 2, 3, 3), {("l", "m"): torch.rand(3, 3, 3)}
    rng = torch.get_rng_state()
    got = faithfulness_numbers(model, x, maps, torch.zeros(3, dtype=torch.long), ["deletion"])
    assert list(got["l", "m"]) == ["deletion"] and 0 <= got["l", "m"]["deletion"] <= 1
    assert model.training and all(mod.training for mod in model.modules())  # modes restored
    assert all(p.grad is None for p in model.parameters())
    assert torch.equal(torch.get_rng_state(), rng)


def test_forward_count():
    # 16 images, 16 steps: 17 x 16 = 272 copies a curve, 5 forwards of 64; the masked images one more.
    assert forward_count(["deletion"], 16, 64, steps=16) == math.ceil(272 / 64)
    assert (
        forward_count(["deletion", "insertion", "average_drop", "increase_in_confidence"], 16, 64, 16) == 11
    )
    assert forward_count(["average_drop"], 16, 8) == 2


def test_forwards_are_counted_right():
    model = _model()
    calls = []
    model.register_forward_hook(lambda *_: calls.append(1))
    x, m = torch.randn(5, 2, 3, 3), torch.rand(5, 3, 3)
    faithfulness_numbers(
        model, x, {("l", "m"): m}, torch.zeros(5, dtype=torch.long), NAMES, chunk_size=4, steps=2
    )
    # The batch's own probabilities (2 forwards of 4) plus what forward_count says.
    assert len(calls) == 2 + forward_count(NAMES, 5, 4, steps=2)
