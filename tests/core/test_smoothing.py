"""Eigen and augmentation smoothing: hand-worked maps, geometry brought back, cost, model left as found."""

from __future__ import annotations

from typing import Any

import pytest
import torch
import torch.nn.functional as F
from conftest import (
    FailsOnCall,
    TinyNet,
    assert_same_state,
    explain_leaving_state,
    hand_activation_and_gradient,
    model_state,
)
from torch import Tensor, nn

from cam_callback import CAMEngine, compute_cam
from cam_callback.capture.guided import GUIDED_METHODS, guided_gradcam
from cam_callback.core.methods import LAYER_METHODS, combine, eigencam
from cam_callback.core.smoothing import DEFAULT_SCALES, augment, augmentations, check_scales, restore

WEIGHTED = ["gradcam", "gradcam++", "xgradcam", "hirescam", "layercam"]


# Eigen smoothing -----------------------------------------------------------------------------------------


def test_eigen_smoothing_of_rank_one_weighted_activations() -> None:
    # Both channels are M (mean 0, so centring leaves it), weights (3, 4): the weighted channels are 3M and
    # 4M, a rank-one [hw, K] matrix m (3, 4)^T; its first principal direction is (3, 4)/5, so the projection
    # is 5M (sign: peak 15 positive).
    m = torch.tensor([[1.0, -2.0], [-2.0, 3.0]])
    activations = torch.stack([m, m]).unsqueeze(0)
    weights = torch.tensor([[3.0, 4.0]])
    smoothed = combine(weights, activations, eigen_smooth=True)
    torch.testing.assert_close(smoothed, torch.tensor([[[5.0, 0], [0, 15]]]))
    torch.testing.assert_close(combine(weights, activations), torch.tensor([[[7.0, 0], [0, 21]]]))  # the sum
    # Largest magnitude negative: the sign flips, -5M = [[-5, 20], [0, -15]] -> ReLU (M again of mean 0).
    m2 = torch.tensor([[1.0, -4.0], [0.0, 3.0]])
    flipped = combine(weights, torch.stack([m2, m2]).unsqueeze(0), eigen_smooth=True)
    torch.testing.assert_close(flipped, torch.tensor([[[0.0, 20.0], [0.0, 0.0]]]))


def test_eigen_smoothing_with_element_weights() -> None:
    # HiResCAM-style weights per element: A = 1 everywhere, g^k = c_k M, so w * A is again c_k M.
    m = torch.tensor([[2.0, 0.0], [-1.0, -1.0]])  # mean 0: centring leaves it
    # c = (-1, 0): |c| = 1, the projection is +-M, and the peak 2 is kept positive.
    weights = torch.stack([-1.0 * m, 0.0 * m]).unsqueeze(0)
    ones = torch.ones(1, 2, 2, 2)
    torch.testing.assert_close(combine(weights, ones, eigen_smooth=True), torch.tensor([[[2.0, 0], [0, 0]]]))
    torch.testing.assert_close(combine(weights, ones), torch.tensor([[[0.0, 0.0], [1.0, 1.0]]]))  # ReLU(-M)


def test_eigen_smoothing_is_centred() -> None:
    # The weighted channels are centred over the positions before their first principal component is
    # taken: a constant added to each channel (a bias every position shares) changes nothing.
    generator = torch.Generator().manual_seed(4)
    activations = torch.randn(1, 3, 4, 4, generator=generator, dtype=torch.float64)
    weights = torch.tensor([[0.5, -2.0, 1.0]], dtype=torch.float64)
    offsets = torch.tensor([7.0, -3.0, 20.0], dtype=torch.float64).view(1, 3, 1, 1)
    expected = combine(weights, activations, eigen_smooth=True)
    torch.testing.assert_close(combine(weights, activations + offsets, eigen_smooth=True), expected)


@pytest.mark.parametrize("name", WEIGHTED)
def test_weights_and_combine_reproduce_every_weighted_method(name: str) -> None:
    generator = torch.Generator().manual_seed(2)
    activations = torch.randn(2, 3, 4, 5, generator=generator).abs()
    gradients = torch.randn(2, 3, 4, 5, generator=generator)
    method = LAYER_METHODS[name]
    assert method.weights is not None
    combined = combine(method.weights(activations, gradients), activations)
    torch.testing.assert_close(combined, method.compute(activations, gradients))


def test_eigencam_and_guided_backprop_have_no_weights() -> None:
    assert LAYER_METHODS["eigencam"].weights is None and GUIDED_METHODS["guided-backprop"].layer_part is None




def hand_scorecam_weights(
    model: nn.Module, inputs: Tensor, activations: Tensor, classes: list[int]
) -> Tensor:
    """Score-CAM weights, one masked image at a time: upsample, min-max, mask, softmax probability."""
    weights = torch.zeros(activations.shape[:2])
    with torch.no_grad():
        for b, c in enumerate(classes):
            for k in range(activations.shape[1]):
                up = resize(activations[b : b + 1, k : k + 1], tuple(inputs.shape[-2:]))
                mask = (up - up.min()) / (up.max() - up.min())
                weights[b, k] = model(inputs[b : b + 1] * mask).softmax(dim=1)[0, c]
    return weights


@pytest.mark.parametrize("name", ["gradcam", "hirescam", "scorecam"])
def test_engine_eigen_smooth_projects_the_weighted_activations(
    tiny_net: TinyNet, images: Tensor, name: str
) -> None:
    result = CAMEngine(tiny_net, "features.3", name, eigen_smooth=True)(images, target=[1, 4])
    plain = CAMEngine(tiny_net, "features.3", name)(images, target=[1, 4])
    tiny_net.eval()
    activations, gradients = hand_activation_and_gradient(tiny_net, images, tiny_net.features[3], [1, 4])
    if name == "gradcam":
        weighted = gradients.mean(dim=(2, 3), keepdim=True) * activations
    elif name == "hirescam":
        weighted = gradients * activations
    else:
        weights = hand_scorecam_weights(tiny_net, images, activations, [1, 4])
        weighted = weights[:, :, None, None] * activations
    tolerance: dict[str, Any] = {"rtol": 1e-4, "atol": 1e-6}
    torch.testing.assert_close(result.raw[("features.3", name)], eigencam(weighted), **tolerance)
    torch.testing.assert_close(plain.raw[("features.3", name)], weighted.sum(dim=1).clamp(min=0), **tolerance)
    assert not torch.allclose(result.raw[("features.3", name)], plain.raw[("features.3", name)])


# Augmentation smoothing ----------------------------------------------------------------------------------


class SumNet(nn.Module):
    """1-channel identity 1x1 conv (the layer), sum over space, logits (s, -s): Grad-CAM of class 0 is A."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 1, 1, bias=False)
        with torch.no_grad():
            self.conv.weight.fill_(1.0)
        self.forward_calls = 0
        self.sizes: list[tuple[int, int]] = []

    def forward(self, x: Tensor) -> Tensor:
        self.forward_calls += 1
        self.sizes.append((int(x.shape[-2]), int(x.shape[-1])))
        total = self.conv(x).sum(dim=(1, 2, 3))
        return torch.stack([total, -total], dim=1)


def resize(x: Tensor, size: tuple[int, ...]) -> Tensor:
    return F.interpolate(x, size=size, mode="bilinear", align_corners=False)


def test_aug_smooth_brings_every_map_back_to_the_original_geometry() -> None:
    # Grad-CAM of class 0 here is A itself: alpha = 1. An augmented pass gives flip(resize(x)); flipping back
    # and resizing back leaves resize(resize(x, s), (H, W)); a wrong flip-back would mirror the image.
    generator = torch.Generator().manual_seed(0)
    x = torch.rand(2, 1, 10, 10, generator=generator)
    x[:, :, :, :3] += 2.0  # bright left edge
    model = SumNet()
    out = compute_cam(model, x, "conv", method="gradcam", target=0, aug_smooth=True, raw=True)
    sizes = {1.0: (10, 10), 1.1: (11, 11), 0.9: (9, 9)}
    expected = sum(2 * resize(resize(x, sizes[s]), (10, 10)) for s in (1.0, 1.1, 0.9)) / 6
    assert isinstance(expected, Tensor)
    torch.testing.assert_close(out, expected[:, 0])
    assert model.forward_calls == 6
    assert model.sizes == [(10, 10), (11, 11), (9, 9), (10, 10), (11, 11), (9, 9)]
    assert out[:, :, :3].mean() > out[:, :, 3:].mean() + 1.0  # still bright on the left


def test_aug_scales_one_means_a_flip_only() -> None:
    x = torch.rand(1, 1, 4, 6, generator=torch.Generator().manual_seed(1))
    model = SumNet()
    out = compute_cam(model, x, "conv", target=0, aug_smooth=True, aug_scales=(1.0,), raw=True)
    torch.testing.assert_close(out, x[:, 0])
    assert model.forward_calls == 2


class HalvesNet(nn.Module):
    """1-channel identity 1x1 conv (the layer); logits: the sums of its left and right halves (the middle
    column of an odd width counts right). A bright left edge is class 0, mirrored it is class 1."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 1, 1, bias=False)
        with torch.no_grad():
            self.conv.weight.fill_(1.0)

    def forward(self, x: Tensor) -> Tensor:
        a = self.conv(x)
        half = a.shape[-1] // 2
        return torch.stack([a[..., :half].sum(dim=(1, 2, 3)), a[..., half:].sum(dim=(1, 2, 3))], dim=1)


@pytest.mark.parametrize("method", ["hirescam", "scorecam"])
def test_augmented_passes_keep_the_predicted_classes(method: str) -> None:
    x = torch.rand(1, 1, 10, 10, generator=torch.Generator().manual_seed(3))
    x[..., :3] += 2.0  # bright left edge: class 0, and class 1 once flipped
    model = HalvesNet()
    with torch.no_grad():
        assert model(x).argmax(dim=1).tolist() == [0]
        assert model(x.flip(-1)).argmax(dim=1).tolist() == [1]
    result = CAMEngine(model, "conv", method, aug_smooth=True)(x)
    assert result.classes is not None and result.classes.tolist() == [0]

    def averaged(classes_of: Any) -> Tensor:
        """The mean of the restored maps of every augmentation, each explained for ``classes_of(inputs)``."""
        total = torch.zeros(1, 10, 10)
        for flip, scale in augmentations(DEFAULT_SCALES):
            inputs = augment(x, flip, scale)
            maps = compute_cam(model, inputs, "conv", method, target=classes_of(inputs), raw=True)
            total += restore(maps, flip, (10, 10))
        return total / 6

    kept = averaged(lambda inputs: 0)
    torch.testing.assert_close(result.raw[("conv", method)], kept)
    if method == "hirescam":  # HiResCAM shows only the predicted half: predicting again would differ
        predicted_again = averaged(lambda inputs: int(model(inputs).argmax()))
        assert not torch.allclose(predicted_again, kept, atol=1e-3)


def test_aug_smooth_averages_guided_gradcam_but_not_the_guided_saliency(
    tiny_net: TinyNet, images: Tensor
) -> None:
    methods = ["gradcam", "guided-gradcam", "guided-backprop"]
    smooth = CAMEngine(tiny_net, "features.3", methods, aug_smooth=True)(images, target=[0, 1])
    plain = CAMEngine(tiny_net, "features.3", methods)(images, target=[0, 1])
    key = ("features.3", "guided-backprop")
    torch.testing.assert_close(smooth.saliency[key], plain.saliency[key])
    assert not torch.allclose(smooth.raw[("features.3", "gradcam")], plain.raw[("features.3", "gradcam")])
    expected = guided_gradcam(smooth.saliency[key], smooth.raw[("features.3", "gradcam")])
    torch.testing.assert_close(smooth.saliency[("features.3", "guided-gradcam")], expected)


def test_augment_and_restore_hand_case() -> None:
    x = torch.arange(4.0).view(1, 1, 1, 4)
    assert torch.equal(augment(x, True, 1.0), torch.tensor([[[[3.0, 2, 1, 0]]]]))
    assert augment(x, False, 0.5).shape == (1, 1, 1, 2)  # sides rounded, at least 1
    restored = restore(torch.tensor([[[3.0, 2, 1, 0]]]), True, (1, 4))
    assert torch.equal(restored, torch.tensor([[[0.0, 1, 2, 3]]]))
    assert augmentations((1.1, 1.0, 1.1)) == [(False, 1.0), (False, 1.1), (True, 1.0), (True, 1.1)]


@pytest.mark.parametrize(("bad", "error", "match"), [
    ((), ValueError, "at least one scale"),
    ((1.0, 0.0), ValueError, "finite and positive"),
    ((1.0, float("nan")), ValueError, "finite and positive"),
    ("1.0", TypeError, "sequence of floats"),
    ((True,), TypeError, "must be a number"),
])
def test_aug_scales_are_checked(bad: object, error: type[Exception], match: str) -> None:
    with pytest.raises(error, match=match):
        check_scales(bad)  # type: ignore[arg-type]


@pytest.mark.parametrize("flag", ["eigen_smooth", "aug_smooth"])
def test_smoothing_flags_must_be_bools(tiny_net: TinyNet, flag: str) -> None:
    with pytest.raises(TypeError, match=f"`{flag}` must be a bool"):
        CAMEngine(tiny_net, "features.3", "gradcam", **{flag: "yes"})  # type: ignore[arg-type]


# The model left as found ---------------------------------------------------------------------------------


OPTIONS: dict[str, dict[str, Any]] = {"eigen": {"eigen_smooth": True}, "aug": {"aug_smooth": True}}


@pytest.mark.parametrize("context", ["plain", "no_grad", "inference_mode"])
@pytest.mark.parametrize("option", list(OPTIONS))
def test_model_left_as_found(tiny_net: TinyNet, images: Tensor, option: str, context: str) -> None:
    for parameter in tiny_net.parameters():
        parameter.grad = torch.full_like(parameter, -0.5)
    reference = CAMEngine(tiny_net, "features.3", "gradcam", **OPTIONS[option])(images, target=[1, 2])
    result = explain_leaving_state(tiny_net, images, context, "gradcam", **OPTIONS[option])
    key = ("features.3", "gradcam")
    torch.testing.assert_close(result.raw[key], reference.raw[key])


def test_an_error_in_an_augmented_pass_leaves_nothing_behind(images: Tensor) -> None:
    model = FailsOnCall(fail_at=4)
    before = model_state(model)
    with pytest.raises(RuntimeError, match="boom"):
        CAMEngine(model, "net.features.3", "gradcam", aug_smooth=True)(images)
    assert model.calls == 4
    assert_same_state(before, model_state(model))


NEWER = ["gradcam-elementwise", "kpcacam", "shapleycam", "finercam", "fullgrad"]


@pytest.mark.parametrize("method", NEWER)
def test_aug_smooth_averages_the_newer_methods_too(tiny_net: TinyNet, images: Tensor, method: str) -> None:
    # FullGrad's map is at the input's size, the others at the layer's: each is brought back to its own.
    result = CAMEngine(tiny_net, "features.3", method, aug_smooth=True)(images, target=[0, 1])
    smooth = result.raw[("features.3", method)]
    total = torch.zeros_like(smooth)
    for flip, scale in augmentations(DEFAULT_SCALES):
        inputs = augment(images, flip, scale)
        maps = compute_cam(tiny_net, inputs, "features.3", method, target=[0, 1], raw=True)
        total += restore(maps, flip, (smooth.shape[-2], smooth.shape[-1]))
    torch.testing.assert_close(smooth, total / 6)
    plain = compute_cam(tiny_net, images, "features.3", method, target=[0, 1], raw=True)
    assert not torch.allclose(smooth, plain, atol=1e-4)


@pytest.mark.parametrize("method", ["eigengradcam", "kpcacam", "fullgrad"])
def test_eigen_smooth_leaves_the_methods_without_a_weighted_sum_alone(
    tiny_net: TinyNet, images: Tensor, method: str
) -> None:
    plain = compute_cam(tiny_net, images, "features.3", method, target=[0, 1], raw=True)
    smooth = compute_cam(tiny_net, images, "features.3", method, target=[0, 1], raw=True, eigen_smooth=True)
    assert torch.equal(plain, smooth)
