"""The CAM formulas as pure functions: hand-worked cases and an independent float64 reference."""

from __future__ import annotations

import math
import re

import numpy as np
import pytest
import torch
from conftest import kernel_pca_reference, reference_map

from cam_callback.capture.registry import METHODS, get_method, method_names
from cam_callback.core.methods import (
    LAYER_METHODS,
    eigencam,
    eigengradcam,
    gradcam,
    gradcam_elementwise,
    gradcam_plus_plus,
    hirescam,
    kpcacam,
    layercam,
    randomcam_weights,
    shapleycam,
    xgradcam,
)

ALL = [
    "gradcam", "gradcam++", "xgradcam", "hirescam", "layercam", "eigencam", "gradcam-elementwise",
    "eigengradcam", "kpcacam", "randomcam",
]


def t(rows: list) -> torch.Tensor:
    return torch.tensor(rows, dtype=torch.float32)


def test_gradcam_worked_example_of_the_notes() -> None:
    a1 = [[1, 0, 2], [3, 5, 0], [1, 1, 1]]
    a2 = [[0, 1, 0], [3, 1, 0], [1, 0, 1]]
    activations = t([[a1, a2]])
    # Any gradient whose spatial mean is (1/3, -2/3) gives those channel weights.
    gradients = t([[[[1, 0, 0], [0, 0, 0], [0, 0, 2]], [[-6, 0, 0], [0, 0, 0], [0, 0, 0]]]])
    expected = t([[[1 / 3, 0, 2 / 3], [0, 1, 0], [0, 1 / 3, 0]]])
    torch.testing.assert_close(gradcam(activations, gradients), expected)


def test_gradcam_plus_plus_hand_case() -> None:
    # One channel, sum(A) = 3; g = 1 -> alpha = 1/(2+3) = 1/5; g = -1 -> alpha = 1/(2-3) = -1 but ReLU(g) = 0.
    # w = 1/5, map = A/5.
    out = gradcam_plus_plus(t([[[[1, 2]]]]), t([[[[1, -1]]]]))
    torch.testing.assert_close(out, t([[[0.2, 0.4]]]))


def test_gradcam_plus_plus_zero_denominator_gives_zero_alpha() -> None:
    # sum(A) = 4; at g = -1/2 the denominator 2/4 - 4/8 is exactly 0, at g = 0 it is 0 too;
    # at g = 1, alpha = 1/(2+4) = 1/6, so w = 1/6 and the map is A/6.
    activations = t([[[[1, 3, 0]]]])
    gradients = t([[[[-0.5, 1, 0]]]])
    out = gradcam_plus_plus(activations, gradients)
    assert torch.isfinite(out).all()
    torch.testing.assert_close(out, t([[[1 / 6, 0.5, 0]]]))


def test_xgradcam_hand_case_and_zero_sum_channels() -> None:
    # Channel 1: w = (1*2 + 3*4) / (1+3) = 3.5. Channel 2 sums to 0 and channel 3 is all zero: weight 0,
    # however large their gradients.
    activations = t([[[[1, 3]], [[1, -1]], [[0, 0]]]])
    gradients = t([[[[2, 4]], [[1e6, -1e6]], [[5, 5]]]])
    out = xgradcam(activations, gradients)
    assert torch.isfinite(out).all()
    torch.testing.assert_close(out, t([[[3.5, 10.5]]]))


def test_hirescam_and_layercam_hand_case() -> None:
    # Channel 1: A = (1, 2), g = (3, -1), so g*A = (3, -2) and ReLU(g)*A = (3, 0).
    # Channel 2: A = (0, -2), g = (1, -1), so g*A = (0, 2) but ReLU(g)*A = (0, 0).
    activations = t([[[[1, 2]], [[0, -2]]]])
    gradients = t([[[[3, -1]], [[1, -1]]]])
    torch.testing.assert_close(hirescam(activations, gradients), t([[[3, 0]]]))  # ReLU(3+0, -2+2)
    torch.testing.assert_close(layercam(activations, gradients), t([[[3, 0]]]))
    torch.testing.assert_close(hirescam(activations[:, :1], gradients[:, :1]), t([[[3, 0]]]))
    torch.testing.assert_close(hirescam(activations[:, 1:], gradients[:, 1:]), t([[[0, 2]]]))
    torch.testing.assert_close(layercam(activations[:, 1:], gradients[:, 1:]), t([[[0, 0]]]))


def test_gradcam_elementwise_clips_each_channel_before_the_sum() -> None:
    # The HiResCAM case above: g*A is (3, -2) and (0, 2); clipped per channel (3, 0) and (0, 2), summed
    # (3, 2), where HiResCAM's sum (3, 0) lets channel 1's -2 cancel channel 2's 2.
    activations = t([[[[1, 2]], [[0, -2]]]])
    gradients = t([[[[3, -1]], [[1, -1]]]])
    torch.testing.assert_close(gradcam_elementwise(activations, gradients), t([[[3, 2]]]))


def test_eigengradcam_is_eigencam_of_the_gradient_times_the_activations() -> None:
    # Rank one g*A = u v^T (the eigencam case above) with A = u v^T / g for a g without zeros.
    u, v = t([0.0, 1.0, 2.0, 5.0]), t([3.0, -4.0, 0.0])
    product = torch.einsum("k,n->kn", v, u).reshape(1, 3, 2, 2)
    gradients = t([[[[2, -1], [4, 0.5]], [[1, 1], [-2, 3]], [[1, 2], [3, 4]]]])
    out = eigengradcam(product / gradients, gradients)
    torch.testing.assert_close(out, t([[[0.0, 0.0], [0.0, 15.0]]]))


def test_kpcacam_two_positions_by_hand() -> None:
    # Points x1, x2 at squared distance d: the mean of the 2x2 squared distances is d/2, so gamma = 2/d and
    # K = [[1, e], [e, 1]] with e = exp(-2). H K H = (1 - e)/2 [[1, -1], [-1, 1]]: eigenvalue 1 - e, vector
    # (1, -1)/sqrt(2); coordinates sqrt(1 - e) (1, -1)/sqrt(2). Equal magnitudes: the first is the peak, so
    # it is kept positive; ReLU zeroes the second. Any scale of A gives the same map.
    expected = t([[[math.sqrt((1 - math.exp(-2)) / 2), 0.0]]])
    for scale in (1.0, 1e-3, 1e3):
        activations = scale * t([[[[0, 3]], [[1, -1]]]])
        torch.testing.assert_close(kpcacam(activations), expected)
    # A fixed gamma: d = 9 + 4 = 13 with gamma 1/13 gives e = exp(-1).
    expected_fixed = t([[[math.sqrt((1 - math.exp(-1)) / 2), 0.0]]])
    torch.testing.assert_close(kpcacam(t([[[[0, 3]], [[1, -1]]]]), gamma=1 / 13), expected_fixed)


def test_kpcacam_with_a_given_gamma_matches_the_reference() -> None:
    activations = torch.randn(2, 3, 4, 3, generator=torch.Generator().manual_seed(4), dtype=torch.float64)
    out = kpcacam(activations, gamma=0.3)
    for b in range(2):
        expected = kernel_pca_reference(activations[b], gamma=0.3).reshape(4, 3)
        torch.testing.assert_close(out[b], expected, rtol=1e-9, atol=1e-9)


def test_shapleycam_subtracts_half_the_hessian_product() -> None:
    # Two channels of two positions: w = mean(g - HA/2)
    # = (mean(2, 4) - mean(1, 3)/2, mean(1, 1) - mean(6, 2)/2) = (3 - 1, 1 - 2) = (2, -1);
    # map = ReLU(2 A^1 - A^2).
    activations = t([[[[1, 2]], [[1, 5]]]])
    gradients = t([[[[2, 4]], [[1, 1]]]])
    hessian_product = t([[[[1, 3]], [[6, 2]]]])
    torch.testing.assert_close(shapleycam(activations, gradients, hessian_product), t([[[1, 0]]]))
    torch.testing.assert_close(shapleycam(activations, gradients, torch.zeros(1, 2, 1, 2)), gradcam(
        activations, gradients))


def test_eigen_smoothing_of_gradcam_elementwise_takes_the_component_of_its_clipped_terms() -> None:
    generator = torch.Generator().manual_seed(2)
    activations = torch.randn(2, 4, 3, 5, generator=generator)
    gradients = torch.randn(2, 4, 3, 5, generator=generator)
    out = LAYER_METHODS["gradcam-elementwise"].compute(activations, gradients, eigen_smooth=True)
    expected = torch.stack([
        torch.as_tensor(_first_principal_component(
            (gradients[i] * activations[i]).clamp(min=0).reshape(4, 15).T.double().numpy()
        )).reshape(3, 5) for i in range(2)
    ])
    torch.testing.assert_close(out.double(), expected, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("flip", [1.0, -1.0])
def test_eigencam_rank_one_gives_the_centred_u_times_norm_v(flip: float) -> None:
    # A = u v^T as [hw, K]: centred, (u - mean u) v^T, still rank one; its projection is (u - 2) * ||v||
    # = (-2, -1, 0, 3) * 5, kept with the sign that makes the largest magnitude (15) positive, then ReLU.
    u = t([0.0, 1.0, 2.0, 5.0])  # 2x2 positions, mean 2
    v = t([3.0, -4.0, 0.0])  # 3 channels, ||v|| = 5
    activations = flip * torch.einsum("k,n->kn", v, u).reshape(1, 3, 2, 2)
    out = eigencam(activations, None)
    torch.testing.assert_close(out, t([[[0.0, 0.0], [0.0, 15.0]]]))


def _first_principal_component(matrix: np.ndarray) -> np.ndarray:
    """Independently: centre the [hw, K] matrix's columns, SVD, project, sign rule, ReLU."""
    centred = matrix - matrix.mean(axis=0, keepdims=True)
    _, _, right = np.linalg.svd(centred, full_matrices=False)
    projection = centred @ right[0]
    projection *= np.sign(projection[np.argmax(np.abs(projection))]) or 1.0
    relu: np.ndarray = np.maximum(projection, 0)
    return relu


@pytest.mark.parametrize("shape", [(2, 8, 2, 3), (2, 3, 4, 5)], ids=["fewer-positions", "fewer-channels"])
def test_eigencam_is_the_centred_first_principal_component(shape) -> None:
    # Both branches (Gram matrix over positions or over channels) against numpy's SVD of the centred A.
    activations = torch.randn(*shape, generator=torch.Generator().manual_seed(5), dtype=torch.float64)
    b, k, h, w = shape
    out = eigencam(activations)
    for i in range(b):
        expected = _first_principal_component(activations[i].reshape(k, h * w).T.numpy()).reshape(h, w)
        np.testing.assert_allclose(out[i].numpy(), expected, rtol=1e-9, atol=1e-9)


def test_eigencam_ignores_a_constant_offset_of_each_channel() -> None:
    # Centring removes what every position shares: adding a large constant to each channel, which would
    # dominate an uncentred projection, leaves the map as it was.
    generator = torch.Generator().manual_seed(8)
    activations = torch.randn(2, 4, 5, 6, generator=generator, dtype=torch.float64)
    offsets = 50 * torch.rand(2, 4, 1, 1, generator=generator, dtype=torch.float64)
    torch.testing.assert_close(eigencam(activations + offsets), eigencam(activations))
    # A single position has nothing to centre against: a zero map, not a division by zero.
    assert torch.equal(eigencam(torch.ones(1, 3, 1, 1)), torch.zeros(1, 1, 1))


def test_eigencam_ignores_gradients() -> None:
    activations = torch.randn(2, 3, 4, 5, generator=torch.Generator().manual_seed(3))
    torch.testing.assert_close(eigencam(activations), eigencam(activations, torch.randn(2, 3, 4, 5)))


@pytest.mark.parametrize("name", ALL)
def test_every_method_matches_the_reference_on_random_tensors(name: str) -> None:
    generator = torch.Generator().manual_seed(11)
    # Mostly positive activations, as after a ReLU, with some negative ones.
    activations = torch.randn(3, 4, 5, 6, generator=generator).abs() - 0.1
    gradients = torch.randn(3, 4, 5, 6, generator=generator)
    out = LAYER_METHODS[name].compute(activations, gradients)
    expected = reference_map(name, activations, gradients)
    assert out.shape == (3, 5, 6)
    assert out.dtype == torch.float32
    assert expected.abs().max() > 0  # a case where the maps are not trivially zero
    torch.testing.assert_close(out.double(), expected, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("name", ALL)
def test_every_method_gives_zeros_not_nan_on_zero_input(name: str) -> None:
    zeros = torch.zeros(2, 3, 4, 4)
    out = LAYER_METHODS[name].compute(zeros, zeros.clone())
    assert torch.equal(out, torch.zeros(2, 4, 4))


@pytest.mark.parametrize("name", ALL)
def test_every_method_is_nonnegative(name: str) -> None:
    generator = torch.Generator().manual_seed(5)
    activations = torch.randn(4, 3, 3, 3, generator=generator)
    out = LAYER_METHODS[name].compute(activations, torch.randn(4, 3, 3, 3, generator=generator))
    assert (out >= 0).all()
    assert torch.isfinite(out).all()


def test_randomcam_weights_are_fixed_and_move_no_global_random_state() -> None:
    activations = torch.rand(3, 5, 4, 4)
    state = torch.get_rng_state()
    first, again = randomcam_weights(activations), randomcam_weights(activations.clone())
    assert torch.equal(torch.get_rng_state(), state)
    assert torch.equal(first, again) and first.shape == (3, 5)
    assert bool((first >= -1).all() and (first < 1).all()) and len(set(first.flatten().tolist())) == 15
    assert not get_method("randomcam").needs_gradients


def test_registry_names() -> None:
    assert set(ALL) <= set(method_names())
    assert get_method("GradCAM++") is METHODS["gradcam++"]
    assert get_method("EigenCAM").formula is eigencam  # type: ignore[union-attr]


def test_unknown_method_lists_the_valid_names() -> None:
    listing = "".join(rf"(?=.*\b{re.escape(name)}(,|$))" for name in ALL)
    with pytest.raises(ValueError, match=rf"`method`: unknown 'scorecam\+\+'; valid: {listing}"):
        get_method("scorecam++")


def test_method_must_be_a_string() -> None:
    with pytest.raises(TypeError, match="`method` must be a str"):
        get_method(3)  # type: ignore[arg-type]
