"""LayerProbe: what every method reads of one layer after the shared pass, built here by hand."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from cam_callback.capture.probe import LayerProbe
from cam_callback.core.methods import LAYER_METHODS

# Two channels, both M (mean 0 over the positions); gradients constant 3 on channel 0 and 4 on channel 1.
M = torch.tensor([[1.0, -2.0], [-2.0, 3.0]])
ACTIVATIONS = torch.stack([M, M]).unsqueeze(0)  # [1, 2, 2, 2]
GRADIENTS = torch.stack([torch.full((2, 2), 3.0), torch.full((2, 2), 4.0)]).unsqueeze(0)


def probe(gradients: torch.Tensor | None = GRADIENTS, eigen_smooth: bool = False) -> LayerProbe:
    return LayerProbe(
        model=nn.Identity(), inputs=torch.zeros(1, 1, 2, 2), layer=nn.Identity(), activations=ACTIVATIONS,
        target=torch.tensor([0]), scores=torch.tensor([1.0]), reshape=None, chunk_size=4,
        gradients=gradients, eigen_smooth=eigen_smooth,
    )


def test_defaults_hold_no_gradients_and_no_smoothing():
    bare = LayerProbe(nn.Identity(), torch.zeros(1, 1, 2, 2), nn.Identity(), ACTIVATIONS, torch.tensor([0]),
                      torch.tensor([1.0]), None, 4)
    assert bare.gradients is None and bare.eigen_smooth is False


def test_gradcam_reads_the_probes_activations_and_gradients():
    # alpha = (mean 3, mean 4): ReLU(3M + 4M) = ReLU(7M) = [[7, 0], [0, 21]].
    seven_m = torch.tensor([[[7.0, 0], [0, 21]]])
    torch.testing.assert_close(LAYER_METHODS["gradcam"].layer_map(probe()), seven_m)
    # HiResCAM: ReLU(sum_k g^k * A^k) is the same 7M here, LayerCAM too (the gradients are positive).
    for name in ("hirescam", "layercam"):
        torch.testing.assert_close(LAYER_METHODS[name].layer_map(probe()), seven_m)


def test_gradcam_on_a_random_probe_equals_the_formula():
    generator = torch.Generator().manual_seed(3)
    activations = torch.randn(2, 3, 4, 5, generator=generator)
    gradients = torch.randn(2, 3, 4, 5, generator=generator)
    built = LayerProbe(nn.Identity(), torch.zeros(2, 3, 8, 10), nn.Identity(), activations,
                       torch.tensor([0, 1]), torch.zeros(2), None, 4, gradients=gradients)
    expected = torch.zeros(2, 4, 5)
    for b in range(2):
        for k in range(3):
            expected[b] += gradients[b, k].sum() / 20 * activations[b, k]
    expected = expected.clamp(min=0)
    assert (expected > 0).any() and (expected == 0).any()
    torch.testing.assert_close(LAYER_METHODS["gradcam"].layer_map(built), expected)


def test_the_probes_eigen_smooth_flag_switches_to_the_principal_component():
    # Weighted channels 3M and 4M: rank one, first principal direction (3, 4) / 5, projection 5M; its
    # largest entry (15) is positive, so ReLU(5M) = [[5, 0], [0, 15]] instead of ReLU(7M).
    smoothed = LAYER_METHODS["gradcam"].layer_map(probe(eigen_smooth=True))
    torch.testing.assert_close(smoothed, torch.tensor([[[5.0, 0], [0, 15]]]))


def test_a_probe_without_gradients_serves_eigencam_only():
    # Eigen-CAM of [M, M]: the first principal direction is (1, 1) / sqrt(2), projection sqrt(2) M.
    expected = torch.tensor([[[1.0, 0], [0, 3]]]) * 2**0.5
    torch.testing.assert_close(LAYER_METHODS["eigencam"].layer_map(probe(gradients=None)), expected)
    with pytest.raises(ValueError, match="gradcam needs the gradients of the target score at the layer"):
        LAYER_METHODS["gradcam"].layer_map(probe(gradients=None))
