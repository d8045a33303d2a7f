"""Shapley-CAM and Finer-CAM: methods that need a second backward through the shared forward's graph.

Both reuse the engine's one forward (no extra forward pass) and its graph of the part after the earliest
target layer:

- Shapley-CAM needs the Hessian-vector product ``H A`` at each layer: the shared backward is taken with
  ``create_graph=True`` (only when Shapley-CAM is asked for; the gradient's values are the same), then one
  more backward of ``g . A`` (``A`` held fixed) to the layer gives ``H A`` (:func:`hessian_products`). Cost:
  the shared forward and backward, the backward recording its own graph, plus one double backward through
  the part after the layer.
- Finer-CAM needs the gradient of another score, Finer-CAM's contrast (:func:`~cam_callback.core.targets.
  finer_scores` of the classes the shared pass explains): one more backward to the layers. Cost: the
  shared forward and backward plus one backward to the layer.

Nothing is kept between calls: the graphs live in the engine's locals and go with them; parameter
``.grad`` is never written (every backward is ``torch.autograd.grad`` to the captured activations).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import torch
from torch import Tensor

from ..core.methods import LAYER_METHODS, LayerMethod, combine, shapleycam_weights
from .probe import LayerProbe

__all__ = ["SECOND_BACKWARD_METHODS", "FinerMethod", "ShapleyMethod", "hessian_products"]


def hessian_products(
    gradients: Sequence[Tensor | None], activations: Sequence[Tensor]
) -> list[Tensor | None]:
    """``H A`` per layer: ``d/dA (g . A)`` with the second ``A`` held fixed (a Hessian-vector product).

    ``gradients`` must come from ``torch.autograd.grad(..., create_graph=True)`` on ``activations``. A
    gradient that does not depend on its activation (the network is linear after the layer) gives zeros.
    Returns detached tensors shaped like the raw activations (None where the gradient is None).
    """
    products: list[Tensor | None] = []
    for gradient, activation in zip(gradients, activations, strict=True):
        if gradient is None:
            products.append(None)
            continue
        product = None
        if gradient.requires_grad:
            (product,) = torch.autograd.grad(
                gradient, activation, grad_outputs=activation.detach(), retain_graph=True, allow_unused=True
            )
        products.append(torch.zeros_like(activation.detach()) if product is None else product.detach())
    return products


@dataclass(frozen=True)
class ShapleyMethod:
    """Shapley-CAM: Grad-CAM's channel weights with the second-order term, ``mean_ij (g - 1/2 H A)``.

    Cai et al. 2025, "CAMs as Shapley Value-based Explainers" (see
    :func:`cam_callback.core.methods.shapleycam`). Reads ``probe.hessian_product``, which the engine fills
    when this method is asked for.
    """

    name: str
    needs_gradients: bool = field(default=True, init=False)

    def layer_map(self, layer: LayerProbe) -> Tensor:
        """The raw map ``[B, h, w]``: ``ReLU(sum_k w_k A^k)`` (or eigen-smoothed)."""
        if layer.gradients is None or layer.hessian_product is None:
            raise ValueError(f"{self.name} needs the gradient and the Hessian-vector product at the layer")
        weights = shapleycam_weights(layer.activations, layer.gradients, layer.hessian_product)
        return combine(weights, layer.activations, eigen_smooth=layer.eigen_smooth)


@dataclass(frozen=True)
class FinerMethod:
    """A layer method explaining Finer-CAM's contrastive score instead of the target's own score.

    Zhang et al. 2025, "Finer-CAM: Spotting the Difference Reveals Finer Details for Visual Explanation":
    ``finercam`` is Grad-CAM of :class:`~cam_callback.core.targets.FinerTarget`'s score, with the target's
    classes as the classes ``c`` (so ``"label"``, ``"predicted"`` and class indices all work; a callable
    target has no classes: ValueError). Reads ``probe.contrast_gradients``, which the engine fills when this
    method is asked for.

    Attributes:
        name: the registry name.
        layer_part: the layer method applied to the contrast's gradients (Grad-CAM).
    """

    name: str
    layer_part: LayerMethod
    needs_gradients: bool = field(default=True, init=False)

    def layer_map(self, layer: LayerProbe) -> Tensor:
        """The layer part's raw map ``[B, h, w]`` from the contrast's gradients."""
        if layer.contrast_gradients is None:
            raise ValueError(f"{self.name} needs the gradients of the contrastive score at the layer")
        return self.layer_part.compute(
            layer.activations, layer.contrast_gradients, eigen_smooth=layer.eigen_smooth
        )


SECOND_BACKWARD_METHODS: dict[str, ShapleyMethod | FinerMethod] = {
    "shapleycam": ShapleyMethod("shapleycam"),
    "finercam": FinerMethod("finercam", LAYER_METHODS["gradcam"]),
}
"""The methods that take a second backward through the shared forward, by name."""
