"""Score-CAM and Ablation-CAM: hand-worked weights, chunking, cost in forwards, the model left as found."""

from __future__ import annotations

import math
from typing import cast

import pytest
import torch
import torchvision
from conftest import (
    FailsOnCall,
    TinyNet,
    assert_same_state,
    explain_leaving_state,
    model_state,
)
from torch import Tensor, nn

from cam_callback import CAMEngine, compute_cam
from cam_callback.capture.perturbation import ablationcam_weights, scorecam_weights
from cam_callback.capture.probe import LayerProbe
from cam_callback.core.tokens import tokens_to_grid

PERTURBATION = ["scorecam", "ablationcam"]


def sigmoid(value: float) -> float:
    return 1 / (1 + math.exp(-value))


class TwoChannels(nn.Module):
    """x [B, 2, 1, 2] -> identity 1x1 conv (the layer, so A = x) -> average pool -> linear without bias.

    ``batch_sizes`` records the input batch of each forward, ``layer_rows`` the rows of the layer's output
    that the rest of the network received (more than the input's when Ablation-CAM fans a sample out).
    """

    def __init__(self, head: list[list[float]]) -> None:
        super().__init__()
        self.conv = nn.Conv2d(2, 2, 1, bias=False)
        self.fc = nn.Linear(2, 2, bias=False)
        with torch.no_grad():
            self.conv.weight.copy_(torch.eye(2).view(2, 2, 1, 1))
            self.fc.weight.copy_(torch.tensor(head))
        self.batch_sizes: list[int] = []
        self.layer_rows: list[int] = []

    def forward(self, x: Tensor) -> Tensor:
        self.batch_sizes.append(int(x.shape[0]))
        activations = self.conv(x)
        self.layer_rows.append(int(activations.shape[0]))
        return cast(Tensor, self.fc(activations.mean(dim=(2, 3))))


# A^0 = [1, 3], A^1 = [2, 0]; pooled (2, 1).
X = torch.tensor([[1.0, 3.0], [2.0, 0.0]]).view(1, 2, 1, 2)
A0 = torch.tensor([1.0, 3.0])
A1 = torch.tensor([2.0, 0.0])


def test_scorecam_hand_case() -> None:
    # Head rows (1, 1) and (0.5, -1): logits (3, 0), so class 0 is predicted.
    # Channel 0: mask minmax([1, 3]) = [0, 1]; the masked input pools to (1.5, 0); logits (1.5, 0.75);
    # p0 = sigmoid(0.75). Channel 1: mask minmax([2, 0]) = [1, 0]; pools to (0.5, 1); logits (1.5, -0.75);
    # p0 = sigmoid(2.25).
    model = TwoChannels([[1.0, 1.0], [0.5, -1.0]])
    result = CAMEngine(model, "conv", "scorecam")(X)
    assert result.classes is not None
    assert result.classes.tolist() == [0]
    expected = (sigmoid(0.75) * A0 + sigmoid(2.25) * A1).clamp(min=0).view(1, 1, 2)
    torch.testing.assert_close(result.raw[("conv", "scorecam")], expected)
    assert model.batch_sizes == [1, 2]  # the main pass, then both masked copies in one chunk


def test_scorecam_gives_a_constant_channel_no_weight() -> None:
    # A^0 = [2, 2] is constant: its normalised mask is all zero, so it carries no location and weighs 0
    # (a weight would add a uniform offset 2 * w before the ReLU). Channel 1 as in the hand case above:
    # mask [1, 0]; the masked input pools to (1, 1); head rows (1, 1), (0.5, -1) give logits (2, -0.5);
    # p0 = sigmoid(2.5). Map: ReLU(sigmoid(2.5) * [2, 0]).
    x = torch.tensor([[2.0, 2.0], [2.0, 0.0]]).view(1, 2, 1, 2)
    model = TwoChannels([[1.0, 1.0], [0.5, -1.0]])
    result = CAMEngine(model, "conv", "scorecam")(x, 0)
    expected = torch.tensor([sigmoid(2.5) * 2.0, 0.0]).view(1, 1, 2)
    torch.testing.assert_close(result.raw[("conv", "scorecam")], expected)


def test_scorecam_with_a_callable_target_uses_its_score_without_softmax() -> None:
    # Score = logit 0 itself: channel 0 -> 1.5, channel 1 -> 1.5.
    model = TwoChannels([[1.0, 1.0], [0.5, -1.0]])
    out = compute_cam(model, X, "conv", method="scorecam", target=lambda logits: logits[:, 0], raw=True)
    torch.testing.assert_close(out, (1.5 * A0 + 1.5 * A1).view(1, 1, 2))


def test_ablationcam_hand_case() -> None:
    # y0 = 3. Zeroing channel 0 pools to (0, 1): y = 1, w0 = (3 - 1) / 3 = 2/3. Zeroing channel 1 pools to
    # (2, 0): y = 2, w1 = 1/3. Map = ReLU(2/3 [1, 3] + 1/3 [2, 0]) = [4/3, 2].
    model = TwoChannels([[1.0, 1.0], [0.5, -1.0]])
    result = CAMEngine(model, "conv", "ablationcam")(X)
    torch.testing.assert_close(result.raw[("conv", "ablationcam")], torch.tensor([[[4 / 3, 2.0]]]))
    # The main pass, then one forward of the sample fanned out at the layer into 3 copies: one unablated
    # (it must score y0 = 3 again), one without channel 0, one without channel 1.
    assert model.batch_sizes == [1, 1]
    assert model.layer_rows == [1, 3]


def test_ablationcam_divides_by_the_absolute_score() -> None:
    # Class 1 with head row (0.5, -3): y = 1 - 3 = -2. Zeroing channel 0: y = -3, w0 = (-2 + 3) / 2 = 0.5.
    # Zeroing channel 1: y = 1, w1 = (-2 - 1) / 2 = -1.5. Map = ReLU(0.5 [1, 3] - 1.5 [2, 0]) = [0, 1.5]
    # (dividing by y itself would flip both weights and give [2.5, 0]).
    model = TwoChannels([[1.0, 1.0], [0.5, -3.0]])
    out = compute_cam(model, X, "conv", method="ablationcam", target=1, raw=True)
    torch.testing.assert_close(out, torch.tensor([[[0.0, 1.5]]]))


def test_weights_functions_on_a_probe_directly() -> None:
    model = TwoChannels([[1.0, 1.0], [0.5, -1.0]]).eval()
    probe = LayerProbe(model, X, model.conv, X.clone(), torch.tensor([0]), torch.tensor([3.0]), None, 1)
    torch.testing.assert_close(scorecam_weights(probe), torch.tensor([[sigmoid(0.75), sigmoid(2.25)]]))
    torch.testing.assert_close(ablationcam_weights(probe), torch.tensor([[2 / 3, 1 / 3]]))
    # chunk_size 1, one copy per forward: Score-CAM's 2 masked inputs; Ablation-CAM's unablated check copy,
    # then its 2 ablated copies.
    assert model.batch_sizes == [1, 1] + [1, 1, 1]
    assert model.layer_rows == [1, 1] + [1, 1, 1]
    assert not model.conv._forward_hooks


@pytest.mark.parametrize("method", PERTURBATION)
def test_chunking_changes_the_number_of_forwards_not_the_maps(
    tiny_net: TinyNet, images: Tensor, method: str
) -> None:
    # features.3 has K = 6 channels, so a batch of 2 needs 12 copies. Score-CAM runs them ``chunk_size`` at a
    # time; Ablation-CAM per sample (7 copies for the first, with the unablated check copy, 6 for the second).
    expected = {"scorecam": [1 + 12, 1 + 3, 1 + 1], "ablationcam": [1 + 7 + 6, 1 + 2 + 2, 1 + 1 + 1]}
    calls, maps = [], []
    for chunk_size in (1, 5, 64):
        tiny_net.forward_calls = 0
        result = CAMEngine(tiny_net, "features.3", method, chunk_size=chunk_size)(images, target=[1, 4])
        calls.append(tiny_net.forward_calls)
        maps.append(result.raw[("features.3", method)])
    assert calls == expected[method]
    assert maps[0].shape == (2, 6, 6) and (maps[0] > 0).any()
    for other in maps[1:]:
        torch.testing.assert_close(other, maps[0], rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("method", PERTURBATION)
def test_copies_never_exceed_the_chunk_size(method: str) -> None:
    model = TwoChannels([[1.0, 1.0], [0.5, -1.0]])
    CAMEngine(model, "conv", method, chunk_size=3)(torch.cat([X, X * 2, -X]))
    if method == "scorecam":
        assert model.batch_sizes == [3, 3, 3]  # 3 samples x 2 channels = 6 copies, 3 per forward
    else:  # one sample per forward, fanned out at the layer: check copy + 2 channels, then 2, then 2
        assert model.batch_sizes == [3, 1, 1, 1]
        assert model.layer_rows == [3, 3, 2, 2]


def test_ablationcam_matches_zeroing_by_hand(tiny_net: TinyNet, images: Tensor) -> None:
    result = CAMEngine(tiny_net, "features.3", "ablationcam", chunk_size=7)(images, target=[1, 4])
    tiny_net.eval()
    layer = tiny_net.features[3]
    with torch.no_grad():
        activations = layer(tiny_net.features[:3](images))
        base = tiny_net(images)[[0, 1], [1, 4]]
        weights = torch.zeros(2, 6)
        for k in range(6):
            channel = torch.tensor([k])
            handle = layer.register_forward_hook(lambda m, a, out, c=channel: out.index_fill(1, c, 0.0))
            try:
                ablated = tiny_net(images)[[0, 1], [1, 4]]
            finally:
                handle.remove()
            weights[:, k] = (base - ablated) / base.abs()
    expected = (weights[:, :, None, None] * activations).sum(dim=1).clamp(min=0)
    torch.testing.assert_close(result.raw[("features.3", "ablationcam")], expected)


class NeedsItsInputAfterTheLayer(TwoChannels):
    """TwoChannels whose head also reads the input, concatenated after the layer: the part after the layer
    needs every copy's own input row, so Ablation-CAM cannot fan one sample out (torch.cat refuses rows of
    different counts) and must run the copies from the input."""

    def __init__(self) -> None:
        super().__init__([[1.0, 1.0], [0.5, -1.0]])
        self.fc = nn.Linear(4, 2, bias=False)
        with torch.no_grad():
            self.fc.weight.copy_(torch.tensor([[1.0, 1.0, 0.5, 0.5], [0.5, -1.0, 0.0, 1.0]]))

    def forward(self, x: Tensor) -> Tensor:
        self.batch_sizes.append(int(x.shape[0]))
        activations = self.conv(x)
        return cast(Tensor, self.fc(torch.cat([activations.mean(dim=(2, 3)), x.mean(dim=(2, 3))], dim=1)))


class ScoresDifferentlyWhenFannedOut(TwoChannels):
    """A model the fan-out would get wrong without complaint: its score moves by 1 whenever the layer's
    output has other rows than its input. The unablated check copy catches it."""

    def __init__(self) -> None:
        super().__init__([[1.0, 1.0], [0.5, -1.0]])

    def forward(self, x: Tensor) -> Tensor:
        self.batch_sizes.append(int(x.shape[0]))
        activations = self.conv(x)
        shift = 1.0 if activations.shape[0] != x.shape[0] else 0.0
        return cast(Tensor, self.fc(activations.mean(dim=(2, 3)))) + shift


@pytest.mark.parametrize("model_class", [NeedsItsInputAfterTheLayer, ScoresDifferentlyWhenFannedOut])
def test_ablationcam_runs_copies_from_the_input_where_fanning_out_would_fail(model_class: type) -> None:
    model = model_class().eval()
    inputs = torch.cat([X, 2 * X.flip(1)])  # two samples: a fanned-out sample does not match the batch
    result = CAMEngine(model, "conv", "ablationcam", chunk_size=2)(inputs, target=[0, 1])
    # The main pass, the first fanned-out forward (it fails or misses its check), then 4 copies 2 at a time.
    assert model.batch_sizes == [2, 1, 2, 2]
    assert not model.conv._forward_hooks
    # Independently: zero each channel with a hook and run the whole batch, one forward per channel.
    with torch.no_grad():
        base = model(inputs)[[0, 1], [0, 1]]
        weights = torch.zeros(2, 2)
        for k in range(2):
            channel = torch.tensor([k])
            handle = model.conv.register_forward_hook(lambda m, a, out, c=channel: out.index_fill(1, c, 0.0))
            try:
                weights[:, k] = (base - model(inputs)[[0, 1], [0, 1]]) / base.abs()
            finally:
                handle.remove()
    expected = (weights[:, :, None, None] * inputs).sum(dim=1).clamp(min=0)  # A = the input (identity conv)
    torch.testing.assert_close(result.raw[("conv", "ablationcam")], expected)
    assert (expected > 0).any()


def test_ablationcam_fans_out_inside_a_residual_block_like_zeroing_by_hand() -> None:
    # Inside resnet18's layer3.1 the identity path (batch 1 when the sample is fanned out) broadcasts over
    # the copies: the fan-out must still give what zeroing each channel of a whole forward gives.
    torch.manual_seed(0)
    model = torchvision.models.resnet18(weights=None).eval()
    image = torch.randn(1, 3, 32, 32, generator=torch.Generator().manual_seed(5))
    forwards = []
    model.register_forward_pre_hook(lambda module, args: forwards.append(int(args[0].shape[0])))
    result = CAMEngine(model, "layer3.1.conv2", "ablationcam", chunk_size=128)(image, target=7)
    assert forwards == [1, 1, 1, 1]  # the main pass, then 257 copies (one the check) in 3 fanned-out forwards
    layer = model.layer3[1].conv2
    with torch.no_grad():
        captured = []
        handle = layer.register_forward_hook(lambda m, a, out: captured.append(out))
        base = model(image)[0, 7]
        handle.remove()
        weights = torch.zeros(256)
        for k in range(256):
            channel = torch.tensor([k])
            handle = layer.register_forward_hook(lambda m, a, out, c=channel: out.index_fill(1, c, 0.0))
            weights[k] = (base - model(image)[0, 7]) / base.abs()
            handle.remove()
    expected = (weights[:, None, None] * captured[0][0]).sum(dim=0).clamp(min=0)
    assert (expected > 0).any()
    maps = result.raw[("layer3.1.conv2", "ablationcam")]
    torch.testing.assert_close(maps[0], expected, rtol=1e-3, atol=1e-4)


class TokenNet(nn.Module):
    """x [B, 2, 2, 2] -> a class token (1, 2) and 4 patch tokens of 2 features -> ``tok`` (the layer) -> score
    s = sum over every token of (feature 0 - feature 1); logits (s, -s)."""

    def __init__(self) -> None:
        super().__init__()
        self.tok = nn.Identity()

    def forward(self, x: Tensor) -> Tensor:
        patches = x.flatten(2).transpose(1, 2)  # [B, 4, 2], row by row
        cls = torch.tensor([1.0, 2.0]).expand(x.shape[0], 1, 2)
        tokens = self.tok(torch.cat([cls, patches], dim=1))
        total = (tokens[..., 0] - tokens[..., 1]).sum(dim=1)
        return torch.stack([total, -total], dim=1)


# Patch features: A^0 = [[3, 1], [0, 2]] (sum 6), A^1 = [[1, 0], [2, 1]] (sum 4).
TOKENS_X = torch.tensor([[[3.0, 1.0], [0.0, 2.0]], [[1.0, 0.0], [2.0, 1.0]]]).unsqueeze(0)


def test_ablationcam_zeroes_feature_k_of_the_patch_tokens_only() -> None:
    # y = (1 - 2) + 6 - 4 = 1. Feature 0 of the patches zeroed: y = -1 - 4 = -5, w0 = (1 + 5) / 1 = 6.
    # Feature 1 zeroed: y = -1 + 6 = 5, w1 = (1 - 5) / 1 = -4. Map: ReLU(6 A^0 - 4 A^1) = [[14, 6], [0, 8]].
    # Zeroing the class token's features instead would give w = (2, -2).
    out = compute_cam(TokenNet(), TOKENS_X, "tok", method="ablationcam", reshape="tokens", target=0, raw=True)
    torch.testing.assert_close(out, torch.tensor([[[14.0, 6.0], [0.0, 8.0]]]))


def test_ablationcam_refuses_a_reshape_that_changes_the_values() -> None:
    with pytest.raises(ValueError, match="ablationcam: `reshape` must only rearrange the layer's output"):
        compute_cam(
            TokenNet(), TOKENS_X, "tok", method="ablationcam", reshape=lambda t: tokens_to_grid(t) * 2
        )


def test_a_callable_target_must_score_rows_independently(tiny_net: TinyNet, images: Tensor) -> None:
    fixed = torch.tensor([1.0, -1.0])
    with pytest.raises(ValueError, match="score each row"):
        CAMEngine(tiny_net, "features.3", "scorecam")(images, target=lambda out: out[:2, 0] * fixed)


@pytest.mark.parametrize("bad", [0, -3])
def test_chunk_size_must_be_positive(tiny_net: TinyNet, bad: int) -> None:
    with pytest.raises(ValueError, match="`chunk_size` must be at least 1"):
        CAMEngine(tiny_net, "features.3", "scorecam", chunk_size=bad)


@pytest.mark.parametrize("bad", [2.0, True, "8"])
def test_chunk_size_must_be_an_int(tiny_net: TinyNet, bad: object) -> None:
    with pytest.raises(TypeError, match="`chunk_size` must be an int"):
        CAMEngine(tiny_net, "features.3", "scorecam", chunk_size=bad)  # type: ignore[arg-type]


def test_no_backward_when_only_perturbation_methods_run(tiny_net: TinyNet, images: Tensor) -> None:
    engine = CAMEngine(tiny_net, "features.3", PERTURBATION)
    assert not engine.needs_gradients
    with torch.autograd.graph.saved_tensors_hooks(lambda t: pytest.fail("a graph was recorded"), lambda t: t):
        engine(images)


# The model left as found ---------------------------------------------------------------------------------


@pytest.mark.parametrize("context", ["plain", "no_grad", "inference_mode"])
@pytest.mark.parametrize("method", PERTURBATION)
def test_model_left_as_found(tiny_net: TinyNet, images: Tensor, method: str, context: str) -> None:
    for parameter in tiny_net.parameters():
        generator = torch.Generator().manual_seed(parameter.numel())
        parameter.grad = torch.randn(parameter.shape, generator=generator)
    reference = CAMEngine(tiny_net, "features.3", method)(images, target=[1, 2]).raw[("features.3", method)]
    result = explain_leaving_state(tiny_net, images, context, method)
    assert all(m.training for m in tiny_net.modules())
    torch.testing.assert_close(result.raw[("features.3", method)], reference)


@pytest.mark.parametrize("method", PERTURBATION)
def test_an_error_in_a_perturbed_forward_leaves_nothing_behind(images: Tensor, method: str) -> None:
    model = FailsOnCall(fail_at=3)  # the main pass and the first chunk succeed, the second chunk raises
    before = model_state(model)
    with pytest.raises(RuntimeError, match="boom"):
        CAMEngine(model, "net.features.3", method, chunk_size=4)(images)
    assert model.calls == 3
    assert_same_state(before, model_state(model))
