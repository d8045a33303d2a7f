"""The CAM family as pure functions of a layer's activations and the gradients of the target score.

Every function takes float32 tensors ``activations`` and ``gradients`` shaped ``[B, K, h, w]`` (``gradients``
is ``dy^c/dA``, the pre-softmax score ``y^c`` of each sample's target class) and returns the raw map
``[B, h, w]`` after the final ReLU, not normalised. These functions know nothing about models or hooks.

Most methods are a weighting of the activations followed by a sum over channels and a ReLU; their weights
are exposed on their own (``*_weights``: ``[B, K]`` per channel or ``[B, K, h, w]`` per element) so that
:func:`combine` can replace the sum by the first principal component ("eigen smoothing").
:class:`LayerMethod` names one such method for the engine; the methods that need more than one layer's
activations and gradients (Score-CAM, Ablation-CAM, Guided Backpropagation, FullGrad) or a second backward
(Shapley-CAM, Finer-CAM) are defined with the code that runs the model, in :mod:`cam_callback.capture`;
their pure formulas (:func:`shapleycam_weights`) live here.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

import torch
from torch import Tensor

__all__ = [
    "LAYER_METHODS",
    "LayerMethod",
    "LayerTensors",
    "combine",
    "eigencam",
    "eigengradcam",
    "gradcam",
    "gradcam_elementwise",
    "gradcam_plus_plus",
    "hirescam",
    "kpcacam",
    "layercam",
    "randomcam",
    "randomcam_weights",
    "shapleycam",
    "shapleycam_weights",
    "xgradcam",
]


def _weighted_sum(weights: Tensor, activations: Tensor) -> Tensor:
    """ReLU(sum_k w_k A^k) for channel weights ``[B, K]``."""
    return torch.relu(torch.einsum("bk,bkhw->bhw", weights, activations))


def gradcam_weights(activations: Tensor, gradients: Tensor) -> Tensor:
    """Grad-CAM channel weights ``[B, K]``: alpha_k = mean_ij dy/dA^k_ij."""
    return gradients.mean(dim=(2, 3))


def gradcam(activations: Tensor, gradients: Tensor) -> Tensor:
    """Grad-CAM (Selvaraju et al. 2017): alpha_k = mean_ij dy/dA^k_ij, map = ReLU(sum_k alpha_k A^k)."""
    return _weighted_sum(gradcam_weights(activations, gradients), activations)


def gradcam_plus_plus_weights(activations: Tensor, gradients: Tensor) -> Tensor:
    """Grad-CAM++ channel weights ``[B, K]`` (see :func:`gradcam_plus_plus`)."""
    g2 = gradients.pow(2)
    g3 = gradients.pow(3)
    denominator = 2 * g2 + activations.sum(dim=(2, 3), keepdim=True) * g3
    safe = torch.where(denominator != 0, denominator, torch.ones_like(denominator))
    alpha = torch.where(denominator != 0, g2 / safe, torch.zeros_like(denominator))
    return (alpha * torch.relu(gradients)).sum(dim=(2, 3))


def gradcam_plus_plus(activations: Tensor, gradients: Tensor) -> Tensor:
    """Grad-CAM++ (Chattopadhay et al. 2018), closed form for an exponential score S = exp(y^c).

    alpha_ij^k = g^2 / (2 g^2 + sum_ab A_ab^k g^3) with g = dy/dA_ij^k (0 where the denominator is 0),
    w_k = sum_ij alpha_ij^k ReLU(g_ij), map = ReLU(sum_k w_k A^k). The positive per-image factor exp(y^c)
    that the exponential contributes to w_k is left out: it rescales each map and cancels on normalising.
    """
    return _weighted_sum(gradcam_plus_plus_weights(activations, gradients), activations)


def xgradcam_weights(activations: Tensor, gradients: Tensor) -> Tensor:
    """XGrad-CAM channel weights ``[B, K]`` (see :func:`xgradcam`)."""
    totals = activations.sum(dim=(2, 3))
    safe = torch.where(totals != 0, totals, torch.ones_like(totals))
    return torch.where(totals != 0, (gradients * activations).sum(dim=(2, 3)) / safe, 0.0)


def xgradcam(activations: Tensor, gradients: Tensor) -> Tensor:
    """XGrad-CAM (Fu et al. 2020).

    w_k = sum_ij (A^k_ij / sum_ab A^k_ab) dy/dA^k_ij (0 for an all-zero sum).
    """
    return _weighted_sum(xgradcam_weights(activations, gradients), activations)


def hirescam_weights(activations: Tensor, gradients: Tensor) -> Tensor:
    """HiResCAM element weights ``[B, K, h, w]``: the gradients themselves."""
    return gradients


def layercam_weights(activations: Tensor, gradients: Tensor) -> Tensor:
    """LayerCAM element weights ``[B, K, h, w]``: ReLU of the gradients."""
    return torch.relu(gradients)


def hirescam(activations: Tensor, gradients: Tensor) -> Tensor:
    """HiResCAM (Draelos & Carin 2020): map = ReLU(sum_k dy/dA^k (elementwise) A^k), no spatial averaging."""
    return torch.relu((gradients * activations).sum(dim=1))


def layercam(activations: Tensor, gradients: Tensor) -> Tensor:
    """LayerCAM (Jiang et al. 2021): map = ReLU(sum_k ReLU(dy/dA^k) (elementwise) A^k)."""
    return torch.relu((torch.relu(gradients) * activations).sum(dim=1))


def eigencam(activations: Tensor, gradients: Tensor | None = None) -> Tensor:
    """Eigen-CAM (Muhammad & Yeasin 2020): the activations' first principal component, as a map.

    A is read as an ``[h*w, K]`` matrix per image (positions as rows, channels as columns) and centred:
    each channel's mean over the positions is subtracted. The map is the centred matrix projected on its
    first principal direction ``v_1`` (its first right singular vector), ``(A - mean) v_1``, with the sign
    chosen so that the entry of largest magnitude is positive (the salient region), then ReLU. Needs no
    gradients. A layer with a single position, or constant channels, has nothing to centre: the map is zero.

    ``(A - mean) v_1`` equals ``s_1 u_1``, so it is found from the eigen-decomposition of the smaller Gram
    matrix (``[hw, hw]`` or ``[K, K]``), in float64: several times faster than an SVD.
    """
    b, k, h, w = activations.shape
    matrix = activations.reshape(b, k, h * w).transpose(1, 2).double()  # [B, hw, K]
    matrix = matrix - matrix.mean(dim=1, keepdim=True)  # centre each channel over the positions
    if h * w <= k:
        values, vectors = torch.linalg.eigh(matrix @ matrix.transpose(1, 2))  # ascending eigenvalues
        projection = vectors[..., -1] * values[:, -1:].clamp(min=0).sqrt()  # s_1 u_1, up to sign
    else:
        _, vectors = torch.linalg.eigh(matrix.transpose(1, 2) @ matrix)
        projection = torch.einsum("bnk,bk->bn", matrix, vectors[..., -1])  # A v_1, up to sign
    return _positive_peak_relu(projection).reshape(b, h, w).to(activations.dtype)


RANDOMCAM_SEED = 0
"""The seed of :func:`randomcam_weights`' own generator: the same weights for the same shape, every call."""


def randomcam_weights(activations: Tensor, gradients: Tensor | None = None) -> Tensor:
    """Random-CAM channel weights ``[B, K]``: uniform in [-1, 1), from a generator of their own.

    The generator (on the CPU) is seeded with :data:`RANDOMCAM_SEED` at each call, so no global random
    state moves and the weights are the same for every call with the same ``[B, K]``: a fixed baseline to
    read the other methods' maps and numbers against.
    """
    b, k = activations.shape[:2]
    generator = torch.Generator(device="cpu").manual_seed(RANDOMCAM_SEED)
    weights = torch.rand((b, k), generator=generator, dtype=torch.float64) * 2 - 1
    return weights.to(device=activations.device, dtype=activations.dtype)


def randomcam(activations: Tensor, gradients: Tensor | None = None) -> Tensor:
    """Random-CAM, a baseline: ReLU(sum_k w_k A^k) with random weights (:func:`randomcam_weights`)."""
    return _weighted_sum(randomcam_weights(activations), activations)


def _positive_peak_relu(projection: Tensor) -> Tensor:
    """``[B, n]`` projections, each with the sign that makes its entry of largest magnitude positive, ReLU."""
    peak = projection.gather(1, projection.abs().argmax(dim=1, keepdim=True))
    sign = torch.where(peak < 0, -1.0, 1.0).to(projection.dtype)
    return torch.relu(projection * sign)


def gradcam_elementwise_terms(activations: Tensor, gradients: Tensor) -> Tensor:
    """The element-wise Grad-CAM terms ``[B, K, h, w]``: ``ReLU(g^k * A^k)``."""
    return torch.relu(gradients * activations)


def gradcam_elementwise(activations: Tensor, gradients: Tensor) -> Tensor:
    """Element-wise Grad-CAM: map = ReLU(sum_k ReLU(dy/dA^k (elementwise) A^k)).

    The variant of Grad-CAM (Selvaraju et al. 2017) that keeps every position's own gradient, as HiResCAM
    (Draelos & Carin 2020) does, but clips each channel's term at zero before the sum, so a channel that
    speaks against the target at a position cannot cancel one that speaks for it. pytorch-grad-cam calls it
    ``GradCAMElementWise``. The outer ReLU changes nothing (a sum of non-negative terms); it is the
    family's usual last step.
    """
    return torch.relu(gradcam_elementwise_terms(activations, gradients).sum(dim=1))


def eigengradcam(activations: Tensor, gradients: Tensor) -> Tensor:
    """Eigen-Grad-CAM: the first principal component of ``dy/dA (elementwise) A``, as a map.

    Eigen-CAM (Muhammad & Yeasin 2020, "Eigen-CAM: Class Activation Map using Principal Components") applied
    to the gradient-weighted activations ``g^k * A^k`` instead of ``A^k``, so the component is class
    specific: centred over the positions, projected on the first right singular vector, sign chosen so the
    entry of largest magnitude is positive, then ReLU (see :func:`eigencam`).
    """
    return eigencam(gradients * activations)


KPCA_GAMMA_RULE = "1 / (mean squared distance between two positions' activation vectors)"
"""How :func:`kpcacam` picks the RBF kernel's ``gamma`` when none is given."""


def kpcacam(activations: Tensor, gradients: Tensor | None = None, *, gamma: float | None = None) -> Tensor:
    """KPCA-CAM: the activations' first kernel principal component (RBF kernel), as a map.

    From Karmani et al. 2024, "KPCA-CAM: Visual Explainability of Deep Computer Vision Models using Kernel
    PCA". Each image's activations are read as ``n = h*w`` points (one per position) in ``R^K``. The kernel
    is ``k(x_i, x_j) = exp(-gamma ||x_i - x_j||^2)``; by default ``gamma`` is 1 over the mean squared distance
    between two positions of that image (all ``n^2`` pairs, the zero diagonal included; that mean is twice the
    total variance of the channels), which makes the map independent of the activations' scale, so it does
    not drift as the network's activations grow during training. The kernel matrix is centred in feature
    space (``Kc = H K H``, ``H = I - 1/n``) and the map is each position's coordinate on the first component,
    ``sqrt(lambda_1) v_1`` (``v_1`` the unit eigenvector of ``Kc`` with the largest eigenvalue), with the
    sign rule of :func:`eigencam` (entry of largest magnitude positive), then ReLU. Needs no gradients.
    Computed for the whole batch at once, in float64, on the activations' device. A single position, or
    every position alike, gives a zero map.

    Cost per image: the ``n x n`` kernel (memory ``n^2``, time ``n^2 K``) and its eigen-decomposition (time
    ``n^3``): it grows as ``(h w)^2`` in memory and faster in time, so a 7x7 layer costs nothing but a 56x56
    layer holds a 3136x3136 kernel per image. Prefer late, coarse layers.
    """
    b, k, h, w = activations.shape
    points = activations.reshape(b, k, h * w).transpose(1, 2).double()  # [B, n, K]
    squared = torch.cdist(points, points).square()  # [B, n, n]
    if gamma is None:
        mean = squared.mean(dim=(1, 2), keepdim=True)
        scale = torch.where(mean > 0, 1 / torch.where(mean > 0, mean, 1.0), 0.0)
    else:
        scale = torch.full((b, 1, 1), float(gamma), dtype=torch.float64, device=activations.device)
    kernel = torch.exp(-scale * squared)
    total = kernel.mean(dim=(1, 2), keepdim=True)
    kernel = kernel - kernel.mean(dim=1, keepdim=True) - kernel.mean(dim=2, keepdim=True) + total  # H K H
    values, vectors = torch.linalg.eigh(kernel)  # ascending eigenvalues
    projection = vectors[..., -1] * values[:, -1:].clamp(min=0).sqrt()
    return _positive_peak_relu(projection).reshape(b, h, w).to(activations.dtype)


def shapleycam_weights(activations: Tensor, gradients: Tensor, hessian_product: Tensor) -> Tensor:
    """Shapley-CAM channel weights ``[B, K]``: ``w_k = mean_ij (g - 1/2 H A)^k_ij``.

    ``hessian_product`` is ``H A``, the Hessian of the target score with respect to the layer's output
    applied to that output (``d/dA (g . A)`` with ``A`` held fixed), ``[B, K, h, w]``.
    """
    return (gradients - 0.5 * hessian_product).mean(dim=(2, 3))


def shapleycam(activations: Tensor, gradients: Tensor, hessian_product: Tensor) -> Tensor:
    """Shapley-CAM (Cai et al. 2025, "CAMs as Shapley Value-based Explainers"): map = ReLU(sum_k w_k A^k).

    The weights add the second-order term of the score's Taylor expansion around the layer's output to
    Grad-CAM's: ``w_k = mean_ij (g - 1/2 H A)^k_ij`` (see :func:`shapleycam_weights`). Where the network is
    linear after the layer (a pooled linear head, or only ReLUs between, whose Hessian is zero almost
    everywhere), ``H A = 0`` and the map is Grad-CAM's.
    """
    return _weighted_sum(shapleycam_weights(activations, gradients, hessian_product), activations)


def combine(weights: Tensor, activations: Tensor, *, eigen_smooth: bool = False) -> Tensor:
    """The raw map from weights and activations: ``ReLU(sum_k w_k A^k)``, or its eigen-smoothed form.

    Args:
        weights: ``[B, K]`` per channel, or ``[B, K, h, w]`` per element (HiResCAM, LayerCAM).
        activations: ``[B, K, h, w]``.
        eigen_smooth: replace the sum over channels by the projection of the weighted activations
            ``w_k A^k`` on their first principal direction, computed as :func:`eigencam` does for ``A``
            (centred over the positions, sign chosen so the entry of largest magnitude is positive, then
            ReLU). It keeps the
            dominant pattern of the weighted channels and drops the rest, which smooths noisy maps.

    Returns:
        ``[B, h, w]`` float32, non-negative, not normalised.
    """
    if weights.dim() == 2 and not eigen_smooth:
        return _weighted_sum(weights, activations)
    weighted = (weights[:, :, None, None] if weights.dim() == 2 else weights) * activations
    if eigen_smooth:
        return eigencam(weighted)
    return torch.relu(weighted.sum(dim=1))


class LayerTensors(Protocol):
    """What a layer method reads from the engine's shared pass at one layer."""

    @property
    def activations(self) -> Tensor:
        """``[B, K, h, w]`` float32, the layer's output as a feature map."""
        ...

    @property
    def gradients(self) -> Tensor | None:
        """``[B, K, h, w]`` float32 ``dy^c/dA``, or None when no method of the pass needs gradients."""
        ...

    @property
    def eigen_smooth(self) -> bool:
        """Whether weighted sums are replaced by their first principal component (see :func:`combine`)."""
        ...


@dataclass(frozen=True)
class LayerMethod:
    """A method computed from one layer's activations (and gradients) of the engine's shared pass.

    Attributes:
        name: the registry name.
        formula: ``formula(activations, gradients) -> raw map [B, h, w]`` (``gradients`` None for a method
            that needs none).
        weights: ``weights(activations, gradients) -> [B, K] or [B, K, h, w]`` whose :func:`combine` gives
            ``formula``'s map, for eigen smoothing; None where the map is no such sum (Eigen-CAM).
        needs_gradients: whether the shared pass must back-propagate to the layer.
        terms: ``terms(activations, gradients) -> [B, K, h, w]`` whose channel sum gives ``formula``'s map
            before its ReLU, for eigen smoothing a map that is no weighting of ``A`` (element-wise Grad-CAM's
            ``ReLU(g * A)``); used only where ``weights`` is None.
    """

    name: str
    formula: Callable[..., Tensor]
    weights: Callable[[Tensor, Tensor], Tensor] | None = None
    needs_gradients: bool = True
    terms: Callable[[Tensor, Tensor], Tensor] | None = None

    def compute(self, activations: Tensor, gradients: Tensor | None, *, eigen_smooth: bool = False) -> Tensor:
        """The raw map ``[B, h, w]``; ``gradients`` may be None only when the method needs none."""
        if self.needs_gradients and gradients is None:
            raise ValueError(f"{self.name} needs the gradients of the target score at the layer")
        if eigen_smooth and self.weights is not None and gradients is not None:
            return combine(self.weights(activations, gradients), activations, eigen_smooth=True)
        if eigen_smooth and self.terms is not None and gradients is not None:
            return eigencam(self.terms(activations, gradients))
        return self.formula(activations, gradients)

    def layer_map(self, layer: LayerTensors) -> Tensor:
        """The raw map ``[B, h, w]`` of one layer of the shared pass."""
        return self.compute(layer.activations, layer.gradients, eigen_smooth=layer.eigen_smooth)


LAYER_METHODS: dict[str, LayerMethod] = {
    method.name: method
    for method in (
        LayerMethod("gradcam", gradcam, gradcam_weights),
        LayerMethod("gradcam++", gradcam_plus_plus, gradcam_plus_plus_weights),
        LayerMethod("xgradcam", xgradcam, xgradcam_weights),
        LayerMethod("hirescam", hirescam, hirescam_weights),
        LayerMethod("layercam", layercam, layercam_weights),
        LayerMethod("eigencam", eigencam, needs_gradients=False),
        LayerMethod("gradcam-elementwise", gradcam_elementwise, terms=gradcam_elementwise_terms),
        LayerMethod("eigengradcam", eigengradcam),
        LayerMethod("kpcacam", kpcacam, needs_gradients=False),
        LayerMethod("randomcam", randomcam, needs_gradients=False),
    )
}
"""The methods that need nothing but the shared pass, by name."""
