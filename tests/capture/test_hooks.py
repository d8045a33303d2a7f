"""The hooks of one explaining pass and the guard around it: what they capture, and nothing left behind."""

from __future__ import annotations

import pytest
import torch
from conftest import TinyNet
from torch import Tensor, nn

from cam_callback.capture.hooks import LayerCapture, explaining

from .test_engine import DY1_DX, X, assert_no_hooks, conv_linear

# LayerCapture ----------------------------------------------------------------------------------------------


def test_gradient_example_through_the_capture() -> None:
    model = conv_linear()
    with torch.no_grad():
        with LayerCapture({"0": model[0]}, track_gradients=True) as capture:
            outputs = model(X)
        captured = capture.activations["0"]
        assert captured.is_leaf and captured.requires_grad
        (gradient,) = torch.autograd.grad(outputs[0, 0], captured)
    assert_no_hooks(model)
    torch.testing.assert_close(outputs, torch.tensor([[13.0, 15.0]]))
    torch.testing.assert_close(gradient[0, 0], DY1_DX)


def test_capture_without_gradients_keeps_the_true_output(tiny_net: TinyNet, images: Tensor) -> None:
    tiny_net.eval()
    with torch.no_grad(), LayerCapture({"conv": tiny_net.features[3]}, track_gradients=False) as capture:
        tiny_net(images)
    with torch.no_grad():
        expected = tiny_net.features[3](tiny_net.features[:3](images))
    torch.testing.assert_close(capture.activations["conv"], expected)
    assert (capture.activations["conv"] < 0).any()
    assert_no_hooks(tiny_net)


def test_the_hooks_are_removed_when_the_block_raises(tiny_net: TinyNet, images: Tensor) -> None:
    layers = {"features.3": tiny_net.features[3], "features.0": tiny_net.features[0]}
    with pytest.raises(RuntimeError, match="after the forward"):
        with torch.no_grad(), LayerCapture(layers, track_gradients=True) as capture:
            tiny_net(images)
            # registered while the block runs, one per layer
            assert [len(m._forward_hooks) for m in layers.values()] == [1, 1]
            raise RuntimeError("after the forward")
    assert set(capture.activations) == {"features.0", "features.3"}
    assert_no_hooks(tiny_net)


class Twice(nn.Module):
    """Runs the same convolution twice in one forward."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 3, 1)

    def forward(self, x: Tensor) -> Tensor:
        out: Tensor = self.conv(self.conv(x))
        return out


class Pair(nn.Module):
    """A layer whose output is a tuple, not a tensor."""

    def __init__(self) -> None:
        super().__init__()
        self.split = nn.Identity()

    def forward(self, x: Tensor) -> Tensor:
        first, second = self.split((x, -x))
        out: Tensor = first + second
        return out


def test_the_hooks_are_removed_when_a_hook_refuses_the_layer(images: Tensor) -> None:
    twice = Twice()
    message = r"`layer` 'conv' ran more than once in one forward \(a shared module\)"
    with pytest.raises(ValueError, match=message):
        with torch.no_grad(), LayerCapture({"conv": twice.conv}, track_gradients=False):
            twice(images)
    assert_no_hooks(twice)
    pair = Pair()
    with pytest.raises(TypeError, match=r"`layer` 'split' returned tuple, not a tensor"):
        with torch.no_grad(), LayerCapture({"split": pair.split}, track_gradients=True):
            pair(images)
    assert_no_hooks(pair)


# explaining ------------------------------------------------------------------------------------------------


def test_explaining_restores_modes_and_rng_when_the_block_raises(tiny_net: TinyNet) -> None:
    tiny_net.train()
    tiny_net.features[1].eval()  # a mix of modes to restore
    modes = [m.training for m in tiny_net.modules()]
    assert True in modes and False in modes
    rng = torch.get_rng_state()
    with pytest.raises(RuntimeError, match="inside the block"):
        with explaining(tiny_net):
            assert not any(m.training for m in tiny_net.modules())  # eval mode throughout
            assert not torch.is_grad_enabled()
            torch.rand(5)  # moves the global RNG, as dropout in train mode would
            assert not torch.equal(torch.get_rng_state(), rng)
            raise RuntimeError("inside the block")
    assert [m.training for m in tiny_net.modules()] == modes
    assert torch.equal(torch.get_rng_state(), rng)
    assert torch.is_grad_enabled()


def test_explaining_leaves_inference_mode_inside_and_restores_it(tiny_net: TinyNet) -> None:
    with torch.inference_mode():
        with explaining(tiny_net):
            assert not torch.is_inference_mode_enabled() and not torch.is_grad_enabled()
            with torch.enable_grad():
                weight = tiny_net.fc.weight * 2  # a graph can be recorded here
                assert weight.requires_grad
        assert torch.is_inference_mode_enabled()
