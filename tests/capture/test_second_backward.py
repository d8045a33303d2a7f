"""Shapley-CAM and Finer-CAM: a second backward through the shared forward, against float64 references."""

from __future__ import annotations

import copy
import gc
import warnings
import weakref
from typing import Any, cast

import pytest
import torch
from conftest import TinyNet, hand_activation_and_gradient
from torch import Tensor, nn

from cam_callback import CAMEngine
from cam_callback.capture.registry import METHODS
from cam_callback.capture.second_backward import hessian_products
from cam_callback.targets import FinerTarget

CLASSES = [1, 2]


class _Marker:
    """A plain object hung on every forward's autograd node: alive exactly as long as that graph."""


MARKERS: list[weakref.ref[_Marker]] = []


class TrackedSquare(torch.autograd.Function):
    """``x * x`` with a backward made of differentiable ops (so a double backward runs through it)."""

    @staticmethod
    def forward(ctx: Any, x: Tensor) -> Tensor:
        ctx.save_for_backward(x)
        ctx.marker = _Marker()
        MARKERS.append(weakref.ref(ctx.marker))
        return x * x

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> Tensor:
        (x,) = ctx.saved_tensors
        result: Tensor = 2 * x * grad
        return result


class CurvedHead(nn.Module):
    """Two convolutions, then a head that is not linear in the layer ``features.1``: its Hessian is not 0."""

    def __init__(self, tracked: bool = False) -> None:
        super().__init__()
        generator = torch.Generator().manual_seed(3)
        self.features = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.Conv2d(4, 5, 3, padding=1, stride=2))
        self.mix = nn.Conv2d(5, 5, 1)
        self.fc = nn.Linear(5, 4)
        self.tracked = tracked
        with torch.no_grad():
            for parameter in self.parameters():
                parameter.copy_(torch.randn(parameter.shape, generator=generator) * 0.6)

    def head(self, a: Tensor) -> Tensor:
        curved = TrackedSquare.apply(a) if self.tracked else torch.tanh(self.mix(a))
        return cast(Tensor, self.fc(cast(Tensor, curved).mean(dim=(2, 3))))

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.features(x))


def _inputs() -> Tensor:
    return torch.randn(2, 3, 10, 10, generator=torch.Generator().manual_seed(6))


def _reference_shapleycam(model: CurvedHead, x: Tensor, classes: list[int]) -> tuple[Tensor, Tensor]:
    """Shapley-CAM and Grad-CAM in float64, ``H A`` by central differences of the gradient along ``A``."""
    double = copy.deepcopy(model).double()
    a = double.features(x.double()).detach()

    def gradient(at: Tensor) -> Tensor:
        at = at.clone().requires_grad_(True)
        with torch.enable_grad():
            score = double.head(at)[torch.arange(len(classes)), torch.tensor(classes)].sum()
            (g,) = torch.autograd.grad(score, at)
        return g

    step = 1e-4
    g = gradient(a)
    hessian_product = (gradient(a + step * a) - gradient(a - step * a)) / (2 * step)
    shapley = ((g - hessian_product / 2).mean(dim=(2, 3), keepdim=True) * a).sum(dim=1).clamp(min=0)
    gradcam = (g.mean(dim=(2, 3), keepdim=True) * a).sum(dim=1).clamp(min=0)
    return shapley, gradcam


def test_shapleycam_against_a_float64_finite_difference_hessian() -> None:
    model, x = CurvedHead(), _inputs()
    result = CAMEngine(model, "features.1", ["shapleycam", "gradcam"])(x, target=CLASSES)
    expected, gradcam = _reference_shapleycam(model, x, CLASSES)
    assert expected.abs().max() > 0
    assert not torch.allclose(expected, gradcam, rtol=1e-2, atol=1e-3)  # the second-order term counts here
    for name, reference in (("shapleycam", expected), ("gradcam", gradcam)):
        torch.testing.assert_close(result.raw[("features.1", name)].double(), reference, rtol=1e-4, atol=1e-6)


def test_hessian_products_of_a_quadratic_score() -> None:
    # s = sum(c * A^2): g = 2 c A, H = diag(2 c), H A = 2 c A. A linear s = sum(c * A) has H A = 0.
    a = torch.tensor([[1.0, -2.0, 3.0]], requires_grad=True)
    c = torch.tensor([[0.5, 1.0, -1.0]])
    with torch.enable_grad():
        (g,) = torch.autograd.grad((c * a * a).sum(), a, create_graph=True)
        (linear,) = torch.autograd.grad((c * a).sum(), a, create_graph=True)
    torch.testing.assert_close(hessian_products([g], [a])[0], 2 * c * a.detach())
    assert torch.equal(cast(Tensor, hessian_products([linear], [a])[0]), torch.zeros(1, 3))
    assert hessian_products([None], [a]) == [None]


def _live_tensors() -> int:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # isinstance on some deprecated module attributes warns
        return sum(isinstance(item, Tensor) for item in gc.get_objects())


@pytest.mark.filterwarnings("ignore:every finercam map")
def test_no_graph_and_no_tensor_outlives_a_call_over_20_calls() -> None:
    model, x = CurvedHead(tracked=True), _inputs()
    engine = CAMEngine(model, "features.1", ["shapleycam", "finercam"])
    engine(x, target=CLASSES)  # the first call's lazy set-up
    MARKERS.clear()
    gc.collect()
    gc.disable()  # nothing may need the cycle collector to be freed
    try:
        counts = []
        for _ in range(20):
            result = engine(x, target=CLASSES)
            del result
            counts.append(_live_tensors())
            assert all(marker() is None for marker in MARKERS), "a forward's graph outlived its call"
    finally:
        gc.enable()
    assert len(MARKERS) == 20  # one forward per call, each graph freed
    assert counts == [counts[0]] * 20
    assert all(p.grad is None for p in model.parameters())


def _hand_finer_score(logits: Tensor, classes: list[int]) -> Tensor:
    """Finer-CAM's score, written out: the 3 closest other classes, softmax weights as constants, alpha 1."""
    total = logits.new_zeros(())
    for row, c in enumerate(classes):
        values = logits[row].detach().tolist()
        others = sorted((i for i in range(len(values)) if i != c), key=lambda i: -values[i])[:3]
        probabilities = torch.softmax(logits[row].detach(), dim=0)
        weights = [float(probabilities[i]) for i in others]
        contrasts = [w * (logits[row, c] - logits[row, i]) for w, i in zip(weights, others, strict=True)]
        total = total + sum(contrasts) / sum(weights)
    return total


@pytest.mark.parametrize("layer", ["features.3", "features.0"])
def test_finercam_is_gradcam_of_the_contrast_against_float64(
    tiny_net: TinyNet, images: Tensor, layer: str
) -> None:
    result = CAMEngine(tiny_net, layer, "finercam")(images, target=CLASSES)
    double = copy.deepcopy(tiny_net).double().eval()
    store: dict[str, Tensor] = {}

    def hook(module: nn.Module, args: object, output: Tensor) -> Tensor:
        store["a"] = output
        return output.clone()

    handle = double.get_submodule(layer).register_forward_hook(hook)
    try:
        with torch.enable_grad():
            (g,) = torch.autograd.grad(_hand_finer_score(double(images.double()), CLASSES), store["a"])
    finally:
        handle.remove()
    a = store["a"].detach()
    expected = (g.mean(dim=(2, 3), keepdim=True) * a).sum(dim=1).clamp(min=0)
    assert expected.abs().max() > 0
    torch.testing.assert_close(result.raw[(layer, "finercam")].double(), expected, rtol=1e-4, atol=1e-6)
    # Not Grad-CAM of the class's own score.
    module = double.get_submodule(layer)
    plain_a, plain_g = hand_activation_and_gradient(double, images.double(), module, CLASSES)
    plain = (plain_g.mean(dim=(2, 3), keepdim=True) * plain_a).sum(dim=1).clamp(min=0)
    assert not torch.allclose(plain, expected, rtol=1e-2, atol=1e-4)


def test_finercam_equals_gradcam_of_finer_target_and_the_target_works_with_every_method(
    tiny_net: TinyNet, images: Tensor
) -> None:
    finer = CAMEngine(tiny_net, "features.3", "finercam")(images, target="predicted")
    others = [name for name in METHODS if name != "finercam"]
    result = CAMEngine(tiny_net, "features.3", others, chunk_size=16)(images, target=FinerTarget())
    torch.testing.assert_close(result.raw[("features.3", "gradcam")], finer.raw[("features.3", "finercam")])
    for name in others:
        assert torch.isfinite(result.raw[("features.3", name)]).all(), name


def test_finercam_needs_classes(tiny_net: TinyNet, images: Tensor) -> None:
    with pytest.raises(ValueError, match="finercam compares classes of \\[B, classes\\] logits"):
        CAMEngine(tiny_net, "features.3", "finercam")(images, target=lambda out: out[:, 0])
