"""What every method receives: one layer of one batch after the engine's shared forward and backward.

Layer methods (:mod:`cam_callback.core.methods`) read the activations and gradients; perturbation methods
(:mod:`~cam_callback.capture.perturbation`) probe the model with the rest; guided methods
(:mod:`~cam_callback.capture.guided`) read their layer part's map from it. The registry
(:mod:`~cam_callback.capture.registry`) names them all.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from torch import Tensor, nn

__all__ = ["LayerProbe"]


@dataclass
class LayerProbe:
    """One layer of one batch after the engine's shared pass: what every method may read to compute its map.

    The engine builds it after its main pass, with the model already in eval mode. Layer methods read
    ``activations``, ``gradients`` and ``eigen_smooth``; perturbation methods probe the model with the rest.

    Attributes:
        model: the network.
        inputs: ``[B, C, H, W]`` the batch, on the model's device.
        layer: the module whose output Ablation-CAM perturbs.
        activations: ``[B, K, h, w]`` float32, the layer's output for ``inputs`` as a feature map (after
            ``reshape``).
        target: the target class of each sample (``[B]`` long tensor), or a callable
            ``outputs -> scores``; a callable is applied to batches of copies, so it must score each row of
            the model's output on its own (like ``lambda out: out[:, 3]``).
        scores: ``[B]`` float32 pre-softmax target scores of the unperturbed batch.
        reshape: the function that turned the layer's raw output into ``activations``, or None.
        chunk_size: how many perturbed copies go through the model in one forward.
        gradients: ``[B, K, h, w]`` float32 ``dy^c/dA`` from the shared pass, None when no method needs them.
        eigen_smooth: whether maps replace their weighted channel sum by its first principal component.
        hessian_product: ``[B, K, h, w]`` float32 ``H A`` (the Hessian of the score at the layer times its
            output), for Shapley-CAM; None when no method needs it.
        contrast_gradients: ``[B, K, h, w]`` float32 gradients of Finer-CAM's contrastive score, for
            Finer-CAM; None when no method needs them.
    """

    model: nn.Module
    inputs: Tensor
    layer: nn.Module
    activations: Tensor
    target: Tensor | Callable[[Any], Tensor]
    scores: Tensor
    reshape: Callable[[Tensor], Tensor] | None
    chunk_size: int
    gradients: Tensor | None = None
    eigen_smooth: bool = False
    hessian_product: Tensor | None = None
    contrast_gradients: Tensor | None = None
