"""FullGrad: against a float64 full-gradient decomposition written out with explicit bias maps."""

from __future__ import annotations

from typing import cast

import pytest
import torch
import torch.nn.functional as F
from conftest import FailsOnCall, TinyNet, fill_deterministic
from torch import Tensor, nn

from cam_callback import CAMEngine, compute_cam
from cam_callback.capture.fullgrad import fullgrad, implicit_bias

CLASSES = [3, 1]


def _psi(part: Tensor, size: tuple[int, int]) -> Tensor:
    """The paper's post-processing: abs, min-max over (C, h, w) per image, sum over channels, resize."""
    part = part.abs()
    low = part.amin(dim=(1, 2, 3), keepdim=True)
    high = part.amax(dim=(1, 2, 3), keepdim=True)
    scaled = torch.where(high > low, (part - low) / (high - low).clamp(min=1e-300), torch.zeros_like(part))
    summed = scaled.sum(dim=1, keepdim=True)
    return F.interpolate(summed, size=size, mode="bilinear", align_corners=False)[:, 0]


def _reference(net: TinyNet, images: Tensor, classes: list[int]) -> Tensor:
    """TinyNet's forward in float64 with every bias added as a map of its own, so that the gradient to the
    map is the gradient to the layer's output; FullGrad = psi(x * dx) + sum over biases psi(b * db)."""
    conv0, conv3 = cast(nn.Conv2d, net.features[0]), cast(nn.Conv2d, net.features[3])
    bn = cast(nn.BatchNorm2d, net.features[1])
    x = images.double().requires_grad_(True)
    z0 = F.conv2d(x, conv0.weight.double(), None, padding=1)
    bias0 = cast(Tensor, conv0.bias).double()[None, :, None, None].expand_as(z0).clone().requires_grad_(True)
    z0 = z0 + bias0
    scale = bn.weight.double() / torch.sqrt(cast(Tensor, bn.running_var).double() + bn.eps)
    shift_values = bn.bias.double() - cast(Tensor, bn.running_mean).double() * scale
    z1 = z0 * scale[None, :, None, None]
    shift = shift_values[None, :, None, None].expand_as(z1).clone().requires_grad_(True)
    z1 = torch.relu(z1 + shift)
    z3 = F.conv2d(z1, conv3.weight.double(), None, stride=2, padding=1)
    bias3 = cast(Tensor, conv3.bias).double()[None, :, None, None].expand_as(z3).clone().requires_grad_(True)
    z3 = torch.relu(z3 + bias3)
    logits = z3.mean(dim=(2, 3)) @ net.fc.weight.double().T + net.fc.bias.double()
    score = logits[torch.arange(len(classes)), torch.tensor(classes)].sum()
    gx, g0, g1, g3 = torch.autograd.grad(score, [x, bias0, shift, bias3])
    size = (images.shape[-2], images.shape[-1])
    return _psi(gx * x, size) + _psi(g0 * bias0, size) + _psi(g1 * shift, size) + _psi(g3 * bias3, size)


def test_fullgrad_matches_the_float64_decomposition(tiny_net: TinyNet, images: Tensor) -> None:
    expected = _reference(tiny_net, images, CLASSES)
    result = CAMEngine(tiny_net, ["features.3", "features.0"], "fullgrad")(images, target=CLASSES)
    raw = result.raw[("features.3", "fullgrad")]
    assert raw.shape == (2, 12, 12)
    torch.testing.assert_close(raw.double(), expected, rtol=1e-4, atol=1e-5)
    assert torch.equal(result.raw[("features.0", "fullgrad")], raw)  # it ignores the layer


def test_implicit_biases() -> None:
    bn = nn.BatchNorm2d(2).eval()
    with torch.no_grad():
        bn.weight.copy_(torch.tensor([2.0, 1.0]))
        bn.bias.copy_(torch.tensor([0.5, -1.0]))
        cast(Tensor, bn.running_mean).copy_(torch.tensor([1.0, 3.0]))
        cast(Tensor, bn.running_var).copy_(torch.tensor([4.0 - bn.eps, 1.0 - bn.eps]))
    # beta - mean * gamma / sqrt(var + eps): 0.5 - 1 * 2 / 2 = -0.5 and -1 - 3 * 1 / 1 = -4.
    torch.testing.assert_close(implicit_bias(bn), torch.tensor([-0.5, -4.0]))
    group = nn.GroupNorm(1, 2)
    assert torch.equal(cast(Tensor, implicit_bias(group)), group.bias.detach())
    assert implicit_bias(nn.Conv2d(1, 1, 1, bias=False)) is None
    assert implicit_bias(nn.Linear(2, 2)) is None  # not spatial: left out, as in the paper
    assert implicit_bias(nn.BatchNorm2d(2, affine=False, track_running_stats=False)) is None


def test_an_in_place_op_after_a_recorded_layer_is_harmless(images: Tensor) -> None:
    # TinyNet's features.3 feeds an in-place ReLU; the same net with an out-of-place one gives the same map.
    net = fill_deterministic(TinyNet())
    plain = fill_deterministic(TinyNet())
    plain.features[4] = nn.ReLU()
    torch.testing.assert_close(
        compute_cam(net, images, "features.3", "fullgrad", target=CLASSES, raw=True),
        compute_cam(plain, images, "features.3", "fullgrad", target=CLASSES, raw=True),
    )


@pytest.mark.parametrize("fail_at", [1, 2])
def test_hooks_removed_and_no_grad_written_when_a_forward_raises(images: Tensor, fail_at: int) -> None:
    # fail_at 2 is FullGrad's own forward, with its hooks on every convolution and BatchNorm.
    model = FailsOnCall(fail_at)
    with pytest.raises(RuntimeError, match="boom"):
        CAMEngine(model, "net.features.3", "fullgrad")(images)
    assert model.calls == fail_at
    for module in model.modules():
        assert not module._forward_hooks and not module._forward_pre_hooks
    assert all(p.grad is None for p in model.parameters())


def test_the_function_alone_and_a_target_it_cannot_reach(tiny_net: TinyNet, images: Tensor) -> None:
    tiny_net.eval()
    expected = _reference(tiny_net, images, CLASSES)
    torch.testing.assert_close(fullgrad(tiny_net, images, CLASSES).double(), expected, rtol=1e-4, atol=1e-5)
    with pytest.raises(RuntimeError, match="do not depend on the inputs"):
        fullgrad(tiny_net, images, lambda out: out.detach()[:, 0])
