"""Guided Backpropagation and Guided Grad-CAM: hand-worked saliencies, every ReLU form, no trace left."""

from __future__ import annotations

import warnings
from collections.abc import Callable
from typing import Any, cast

import pytest
import torch
import torch.nn.functional as F
from conftest import (
    FailsOnCall,
    TinyNet,
    assert_same_state,
    explain_leaving_state,
    model_state,
)
from torch import Tensor, nn

from cam_callback import CAMEngine, compute_cam
from cam_callback.capture.guided import GuidedReLUMode, guided_backprop, guided_gradcam

GUIDED = ["guided-backprop", "guided-gradcam"]

# Every way of writing a ReLU that guided backprop catches.
RELU_FORMS: dict[str, Callable[[Tensor], Tensor]] = {
    "nn.ReLU": nn.ReLU(),
    "nn.ReLU(inplace)": nn.ReLU(inplace=True),
    "F.relu": F.relu,
    "F.relu(inplace)": lambda h: F.relu(h, inplace=True),
    "F.relu_": F.relu_,
    "torch.relu": torch.relu,
    "torch.relu_": torch.relu_,
    "Tensor.relu": lambda h: h.relu(),
    "Tensor.relu_": lambda h: h.relu_(),
    "Tensor.relu_ (result ignored)": lambda h: (h.relu_(), h)[1],
}


class OneReLU(nn.Module):
    """x [B, 1, 1, 3] -> 1x1 conv to 2 channels (weights 1, -1) -> ReLU in the given form -> linear.

    For x = [1, -2, 3]: conv = [[1, -2, 3], [-1, 2, -3]], after ReLU [[1, 0, 3], [0, 2, 0]].
    Class 0 weights v = [1, -1, -2, -1, 1, 1] over the flattened [channel 0, channel 1].
    """

    def __init__(self, relu: Callable[[Tensor], Tensor]) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 2, 1, bias=False)
        self.relu = relu
        self.fc = nn.Linear(6, 2, bias=False)
        with torch.no_grad():
            self.conv.weight.copy_(torch.tensor([1.0, -1.0]).view(2, 1, 1, 1))
            self.fc.weight.copy_(torch.tensor([[1.0, -1, -2, -1, 1, 1], [0, 1, 0, 1, 0, 1]]))

    def forward(self, x: Tensor) -> Tensor:
        return cast(Tensor, self.fc(self.relu(self.conv(x)).flatten(1)))


X = torch.tensor([1.0, -2.0, 3.0]).view(1, 1, 1, 3)
# Guided: clamp(v, 0) * (ReLU output > 0) = ch0 [1, 0, 0], ch1 [0, 1, 0]; back through the conv: ch0 - ch1.
GUIDED_X = torch.tensor([1.0, -1.0, 0.0]).view(1, 1, 1, 3)
# Plain gradient for contrast: v * (output > 0) = ch0 [1, 0, -2], ch1 [0, 1, 0] -> [1, -1, -2].
PLAIN_X = torch.tensor([1.0, -1.0, -2.0]).view(1, 1, 1, 3)


def assert_relu_backward_is_plain() -> None:
    """After a guided pass a ReLU must again pass negative gradients where its input was positive."""
    x = torch.tensor([2.0, -1.0], requires_grad=True)
    (grad,) = torch.autograd.grad((F.relu(x) * -3).sum(), x)
    assert torch.equal(grad, torch.tensor([-3.0, 0.0]))


# Hand-worked values --------------------------------------------------------------------------------------


@pytest.mark.parametrize("form", list(RELU_FORMS))
def test_guided_backprop_hand_case_for_every_relu_form(form: str) -> None:
    model = OneReLU(RELU_FORMS[form])
    x = X.clone().requires_grad_(True)
    (plain,) = torch.autograd.grad(model(x)[:, 0].sum(), x)
    torch.testing.assert_close(plain, PLAIN_X)  # the plain gradient differs from the guided one
    torch.testing.assert_close(guided_backprop(model, X, target=0), GUIDED_X)
    result = CAMEngine(model, "conv", "guided-backprop")(X, target=0)
    torch.testing.assert_close(result.saliency[("conv", "guided-backprop")], GUIDED_X)
    torch.testing.assert_close(result.raw[("conv", "guided-backprop")], GUIDED_X.abs()[:, 0])
    assert_relu_backward_is_plain()


def test_guided_gradcam_hand_case() -> None:
    # At the conv (the layer): dy0/dA = v * (A > 0) = ch0 [1, 0, -2], ch1 [0, 1, 0]; alpha = (-1/3, 1/3);
    # Grad-CAM = ReLU(-1/3 [1, -2, 3] + 1/3 [-1, 2, -3]) = ReLU([-2/3, 4/3, -2]) = [0, 4/3, 0],
    # shown as [0, 1, 0].
    # Guided Grad-CAM = [1, -1, 0] * [0, 1, 0] = [0, -1, 0].
    model = OneReLU(nn.ReLU(inplace=True))
    result = CAMEngine(model, "conv", ["gradcam", "guided-gradcam", "guided-backprop"])(X, target=0)
    torch.testing.assert_close(result.raw[("conv", "gradcam")], torch.tensor([[[0.0, 4 / 3, 0.0]]]))
    torch.testing.assert_close(result.saliency[("conv", "guided-backprop")], GUIDED_X)
    expected = torch.tensor([0.0, -1, 0]).view(1, 1, 1, 3)
    torch.testing.assert_close(result.saliency[("conv", "guided-gradcam")], expected)
    torch.testing.assert_close(result.raw[("conv", "guided-gradcam")], torch.tensor([[[0.0, 1, 0]]]))
    assert set(result.saliency) == {("conv", "guided-gradcam"), ("conv", "guided-backprop")}
    assert list(result.raw) == [("conv", "gradcam"), ("conv", "guided-gradcam"), ("conv", "guided-backprop")]


def test_guided_backprop_through_two_relus_matches_the_chain_rule_by_hand() -> None:
    generator = torch.Generator().manual_seed(4)
    w1, w2, w3 = (torch.randn(shape, generator=generator) for shape in [(5, 4), (6, 5), (3, 6)])
    model = nn.Sequential(
        nn.Flatten(),
        nn.Linear(4, 5, bias=False),
        nn.ReLU(),
        nn.Linear(5, 6, bias=False),
        nn.ReLU(),
        nn.Linear(6, 3, bias=False),
    )
    with torch.no_grad():
        for linear, weight in zip([model[1], model[3], model[5]], [w1, w2, w3], strict=True):
            cast(nn.Linear, linear).weight.copy_(weight)
    inputs = torch.randn(2, 1, 2, 2, generator=generator)
    classes = [2, 0]
    got = guided_backprop(model, inputs, target=classes)
    for b, c in enumerate(classes):
        x = inputs[b].flatten()
        h1 = w1 @ x
        h2 = w2 @ h1.clamp(min=0)
        g = w3[c].clamp(min=0) * (h2 > 0)
        g = (w2.T @ g).clamp(min=0) * (h1 > 0)
        expected = (w1.T @ g).view(1, 2, 2)
        torch.testing.assert_close(got[b], expected)


def test_guided_gradcam_is_the_product_with_the_shown_gradcam_map() -> None:
    saliency = torch.tensor([[[[1.0, -2.0], [3.0, 4.0]]]])
    cam = torch.tensor([[[2.0, 0.0], [1.0, 4.0]]])  # shown as [[0.5, 0], [0.25, 1]]
    torch.testing.assert_close(guided_gradcam(saliency, cam), torch.tensor([[[[0.5, 0.0], [0.75, 4.0]]]]))
    # A 1x1 map upsamples to a constant, which normalises to zeros.
    assert torch.equal(guided_gradcam(saliency, torch.ones(1, 1, 1)), torch.zeros(1, 1, 2, 2))


# What is and is not caught -------------------------------------------------------------------------------


class ClampReLU(nn.Module):
    def forward(self, x: Tensor) -> Tensor:
        return x.clamp(min=0)


def test_relus_written_otherwise_keep_the_plain_gradient_with_a_warning() -> None:
    model = OneReLU(ClampReLU())
    with pytest.warns(UserWarning, match="no ReLU call was seen"):
        got = guided_backprop(model, X, target=0)
    torch.testing.assert_close(got, PLAIN_X)


def test_the_mode_routes_relus_only_while_active() -> None:
    mode = GuidedReLUMode()
    x = torch.tensor([2.0, -1.0], requires_grad=True)
    with mode:
        y = F.relu(x) + torch.relu(x) + x.relu()
    assert mode.calls == 3
    (grad,) = torch.autograd.grad((y * -1).sum(), x)
    assert torch.equal(grad, torch.zeros(2))  # negative incoming gradient: nothing passes
    assert torch._C._len_torch_function_stack() == 0
    assert_relu_backward_is_plain()


# The engine's contract -----------------------------------------------------------------------------------


def test_selectable_by_name_in_compute_cam(tiny_net: TinyNet, images: Tensor) -> None:
    out = compute_cam(tiny_net, images, "features.3", method="Guided-GradCAM", target=[1, 2])
    assert out.shape == (2, 12, 12) and out.min() >= 0 and out.max() <= 1
    raw = compute_cam(tiny_net, images, "features.3", method="guided-backprop", target=[1, 2], raw=True)
    assert raw.shape == (2, 12, 12) and (raw > 0).any()


def test_guided_backprop_is_keyed_under_every_layer(tiny_net: TinyNet, images: Tensor) -> None:
    result = CAMEngine(tiny_net, ["features.0", "features.3"], GUIDED)(images, target=[0, 3])
    first = result.saliency[("features.0", "guided-backprop")]
    second = result.saliency[("features.3", "guided-backprop")]
    assert first.shape == (2, 3, 12, 12) and first.dtype == torch.float32
    assert torch.equal(first, second)
    products = [result.saliency[(layer, "guided-gradcam")] for layer in ("features.0", "features.3")]
    assert not torch.equal(*products)
    assert set(result.raw) == set(result.saliency)


@pytest.mark.parametrize("context", ["plain", "no_grad", "inference_mode"])
@pytest.mark.parametrize("method", GUIDED)
def test_model_left_as_found(tiny_net: TinyNet, images: Tensor, method: str, context: str) -> None:
    for index, parameter in enumerate(tiny_net.parameters()):
        if index % 2 == 0:
            parameter.grad = torch.full_like(parameter, 0.25 * index)
    tiny_net.dropout.eval()  # a mix of modes to restore
    reference = CAMEngine(tiny_net, "features.3", method)(images, target=[1, 2])
    result = explain_leaving_state(tiny_net, images, context, method)
    key = ("features.3", method)
    torch.testing.assert_close(result.saliency[key], reference.saliency[key])
    assert not result.saliency[("features.3", method)].requires_grad
    assert_relu_backward_is_plain()


@pytest.mark.parametrize("method", GUIDED)
def test_an_error_in_the_guided_pass_leaves_nothing_behind(images: Tensor, method: str) -> None:
    model = FailsOnCall(fail_at=2)  # the engine's main pass succeeds, the guided pass raises
    before = model_state(model)
    with pytest.raises(RuntimeError, match="boom"):
        CAMEngine(model, "net.features.3", method)(images)
    assert model.calls == 2
    assert_same_state(before, model_state(model))
    assert_relu_backward_is_plain()


def test_guided_pass_leaves_parameter_grads_unset(tiny_net: TinyNet, images: Tensor) -> None:
    CAMEngine(tiny_net, "features.3", GUIDED)(images)
    assert all(p.grad is None for p in tiny_net.parameters())


# The callback: training untouched bit for bit with the new methods ----------------------------------------


def _fit_tiny(tmp_path: object, callbacks: list[Any], precision: Any) -> dict[str, Any]:
    import pytorch_lightning as pl
    from lit_models import loaders, make_module_class

    pl.seed_everything(11, verbose=False)
    model = make_module_class(pl)()
    train, val = loaders(dict_batches=True)
    trainer = pl.Trainer(
        max_epochs=2,
        callbacks=callbacks,
        logger=False,
        deterministic=True,
        default_root_dir=str(tmp_path),
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        precision=precision,
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        trainer.fit(model, train, val)
    return {
        "weights": {k: v.clone() for k, v in model.state_dict().items()},
        "optimizer": trainer.optimizers[0].state_dict()["state"],
        "rng": torch.get_rng_state(),
    }


@pytest.mark.parametrize("precision", ["32-true", "bf16-mixed"])
def test_callback_training_is_bit_for_bit_the_same_with_the_new_methods(tmp_path, precision: str) -> None:
    from cam_callback import GradCAMCallback

    plain = _fit_tiny(tmp_path / "without", [], precision)
    methods = ["guided-backprop", "guided-gradcam", "scorecam", "ablationcam"]
    callback = GradCAMCallback(layer="features.3", method=methods, num_samples=2)
    watched = _fit_tiny(tmp_path / "with", [callback], precision)
    assert len(callback.history) >= 2  # the maps were computed at every validation
    for key, value in plain["weights"].items():
        assert torch.equal(value, watched["weights"][key]), key
    for pid, state in plain["optimizer"].items():
        for name, value in state.items():
            other = watched["optimizer"][pid][name]
            assert torch.equal(torch.as_tensor(value), torch.as_tensor(other)), (pid, name)
    assert torch.equal(plain["rng"], watched["rng"])
    assert torch._C._len_torch_function_stack() == 0
