"""The CAM family as pure functions of a layer's activations and the gradients of the target score.

Every function takes float32 tensors ``activations`` and ``gradients`` shaped ``[B, K, h, w]`` (``gradients``
is ``dy^c/dA``, the pre-softmax score ``y^c`` of each sample's target class) and returns the raw map
``[B, h, w]`` after the final ReLU, not normalised. Nothing here knows about models or hooks.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

__all__ = ["CamMethod", "METHODS", "get_method", "method_names"]


def _weighted_sum(weights: Tensor, activations: Tensor) -> Tensor:
    """ReLU(sum_k w_k A^k) for channel weights ``[B, K]``."""
    return torch.relu(torch.einsum("bk,bkhw->bhw", weights, activations))


def gradcam(activations: Tensor, gradients: Tensor) -> Tensor:
    """Grad-CAM (Selvaraju et al. 2017): alpha_k = mean_ij dy/dA^k_ij, map = ReLU(sum_k alpha_k A^k)."""
    return _weighted_sum(gradients.mean(dim=(2, 3)), activations)


def gradcam_plus_plus(activations: Tensor, gradients: Tensor) -> Tensor:
    """Grad-CAM++ (Chattopadhay et al. 2018), closed form for an exponential score S = exp(y^c).

    alpha_ij^k = g^2 / (2 g^2 + sum_ab A_ab^k g^3) with g = dy/dA_ij^k (0 where the denominator is 0),
    w_k = sum_ij alpha_ij^k ReLU(g_ij), map = ReLU(sum_k w_k A^k). The positive per-image factor exp(y^c)
    that the exponential contributes to w_k is left out: it rescales each map and cancels on normalising.
    """
    g2 = gradients.pow(2)
    g3 = gradients.pow(3)
    denominator = 2 * g2 + activations.sum(dim=(2, 3), keepdim=True) * g3
    safe = torch.where(denominator != 0, denominator, torch.ones_like(denominator))
    alpha = torch.where(denominator != 0, g2 / safe, torch.zeros_like(denominator))
    weights = (alpha * torch.relu(gradients)).sum(dim=(2, 3))
    return _weighted_sum(weights, activations)


def xgradcam(activations: Tensor, gradients: Tensor) -> Tensor:
    """XGrad-CAM (Fu et al. 2020): w_k = sum_ij (A^k_ij / sum_ab A^k_ab) dy/dA^k_ij (0 for an all-zero sum)."""
    totals = activations.sum(dim=(2, 3))
    safe = torch.where(totals != 0, totals, torch.ones_like(totals))
    weights = torch.where(totals != 0, (gradients * activations).sum(dim=(2, 3)) / safe, 0.0)
    return _weighted_sum(weights, activations)


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
    """
    b, k, h, w = activations.shape
    matrix = activations.reshape(b, k, h * w).transpose(1, 2)  # [B, hw, K]
    _, _, vh = torch.linalg.svd(matrix, full_matrices=False)
    projection = torch.einsum("bnk,bk->bn", matrix, vh[:, 0, :])
    peak = projection.gather(1, projection.abs().argmax(dim=1, keepdim=True))
    sign = torch.where(peak < 0, -1.0, 1.0)
    return torch.relu(projection * sign).reshape(b, h, w)


@dataclass(frozen=True)
class CamMethod:
    """A named CAM method: ``fn(activations, gradients) -> raw map`` and whether it needs a backward pass."""

    name: str
    fn: Callable[..., Tensor]
    needs_gradients: bool = True


METHODS: dict[str, CamMethod] = {
    "gradcam": CamMethod("gradcam", gradcam),
    "gradcam++": CamMethod("gradcam++", gradcam_plus_plus),
    "xgradcam": CamMethod("xgradcam", xgradcam),
    "hirescam": CamMethod("hirescam", hirescam),
    "layercam": CamMethod("layercam", layercam),
    "eigencam": CamMethod("eigencam", eigencam, needs_gradients=False),
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
