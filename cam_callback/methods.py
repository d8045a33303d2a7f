"""The CAM family as pure functions of a layer's activations and the gradients of the target score.

Every function takes float32 tensors ``activations`` and ``gradients`` shaped ``[B, K, h, w]`` (``gradients``
is ``dy^c/dA``, the pre-softmax score ``y^c`` of each sample's target class) and returns the raw map
``[B, h, w]`` after the final ReLU, not normalised. These functions know nothing about models or hooks.

Most methods are a weighting of the activations followed by a sum over channels and a ReLU; their weights
are exposed on their own (``*_weights``: ``[B, K]`` per channel or ``[B, K, h, w]`` per element) so that
:func:`combine` can replace the sum by the first principal component ("eigen smoothing"). The registry
also lists the methods that need more than one layer's activations and gradients (Score-CAM and
Ablation-CAM in :mod:`cam_callback.perturbation`, Guided Backpropagation in :mod:`cam_callback.guided`);
:attr:`CamMethod.kind` tells the engine how to run each.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor

from .perturbation import ablationcam_weights, scorecam_weights

__all__ = ["CamMethod", "METHODS", "MethodKind", "combine", "get_method", "method_names"]

MethodKind = Literal["layer", "perturbation", "guided"]


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
    """XGrad-CAM (Fu et al. 2020): w_k = sum_ij (A^k_ij / sum_ab A^k_ab) dy/dA^k_ij (0 for an all-zero sum)."""
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
    """Eigen-CAM (Muhammad & Yeasin 2020): projection of A onto its first principal direction.

    A is read as an ``[h*w, K]`` matrix per image; the map is ``A v_1`` with ``v_1`` the first right singular
    vector, its sign chosen so the entry of largest magnitude is positive (the salient region), then ReLU.
    Needs no gradients.

    ``A v_1`` equals ``s_1 u_1``, so it is found from the eigen-decomposition of the smaller Gram matrix,
    ``A A^T`` (``[hw, hw]``) or ``A^T A`` (``[K, K]``), in float64: several times faster than an SVD of ``A``.
    """
    b, k, h, w = activations.shape
    matrix = activations.reshape(b, k, h * w).transpose(1, 2).double()  # [B, hw, K]
    if h * w <= k:
        values, vectors = torch.linalg.eigh(matrix @ matrix.transpose(1, 2))  # ascending eigenvalues
        projection = vectors[..., -1] * values[:, -1:].clamp(min=0).sqrt()  # s_1 u_1, up to sign
    else:
        _, vectors = torch.linalg.eigh(matrix.transpose(1, 2) @ matrix)
        projection = torch.einsum("bnk,bk->bn", matrix, vectors[..., -1])  # A v_1, up to sign
    peak = projection.gather(1, projection.abs().argmax(dim=1, keepdim=True))
    sign = torch.where(peak < 0, -1.0, 1.0).to(projection.dtype)
    return torch.relu(projection * sign).reshape(b, h, w).to(activations.dtype)


def combine(weights: Tensor, activations: Tensor, *, eigen_smooth: bool = False) -> Tensor:
    """The raw map from weights and activations: ``ReLU(sum_k w_k A^k)``, or its eigen-smoothed form.

    Args:
        weights: ``[B, K]`` per channel, or ``[B, K, h, w]`` per element (HiResCAM, LayerCAM).
        activations: ``[B, K, h, w]``.
        eigen_smooth: replace the sum over channels by the projection of the weighted activations
            ``w_k A^k`` onto their first principal direction, computed as :func:`eigencam` does for ``A``
            (uncentred, sign chosen so the entry of largest magnitude is positive, then ReLU). It keeps the
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


@dataclass(frozen=True)
class CamMethod:
    """A named CAM method and how the engine runs it.

    Attributes:
        name: the registry name.
        fn: for ``kind="layer"``, ``fn(activations, gradients) -> raw map [B, h, w]`` from the engine's shared
            forward/backward pass; for ``"guided"``, the same for the method's layer part (the Grad-CAM map of
            Guided Grad-CAM), None when it has none; for ``"perturbation"``,
            ``fn(probe: LayerProbe) -> channel weights [B, K]`` from extra forward passes.
        needs_gradients: whether the shared pass must back-propagate to the layer.
        kind: ``"layer"`` (the shared pass alone), ``"perturbation"`` (extra forwards, no gradients),
            ``"guided"`` (one extra guided forward and backward to the input).
        weights: ``weights(activations, gradients) -> [B, K] or [B, K, h, w]`` whose :func:`combine` gives
            ``fn``'s map, for eigen smoothing; None where the map is no such sum (Eigen-CAM).
    """

    name: str
    fn: Callable[..., Tensor] | None
    needs_gradients: bool = True
    kind: MethodKind = "layer"
    weights: Callable[[Tensor, Tensor], Tensor] | None = None


METHODS: dict[str, CamMethod] = {
    "gradcam": CamMethod("gradcam", gradcam, weights=gradcam_weights),
    "gradcam++": CamMethod("gradcam++", gradcam_plus_plus, weights=gradcam_plus_plus_weights),
    "xgradcam": CamMethod("xgradcam", xgradcam, weights=xgradcam_weights),
    "hirescam": CamMethod("hirescam", hirescam, weights=hirescam_weights),
    "layercam": CamMethod("layercam", layercam, weights=layercam_weights),
    "eigencam": CamMethod("eigencam", eigencam, needs_gradients=False),
    "scorecam": CamMethod("scorecam", scorecam_weights, needs_gradients=False, kind="perturbation"),
    "ablationcam": CamMethod("ablationcam", ablationcam_weights, needs_gradients=False, kind="perturbation"),
    "guided-backprop": CamMethod("guided-backprop", None, needs_gradients=False, kind="guided"),
    "guided-gradcam": CamMethod("guided-gradcam", gradcam, kind="guided", weights=gradcam_weights),
}


def method_names() -> list[str]:
    """The names accepted by ``method`` arguments."""
    return list(METHODS)


def get_method(name: str) -> CamMethod:
    """Look a method up by name; raises ValueError listing the valid names."""
    if not isinstance(name, str):
        raise TypeError(f"`method` must be a str, got {type(name).__name__}")
    try:
        return METHODS[name.lower()]
    except KeyError:
        raise ValueError(f"`method`: unknown {name!r}; valid: {', '.join(METHODS)}") from None
