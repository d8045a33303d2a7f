"""Guided Backpropagation and Guided Grad-CAM.

Guided Backpropagation (Springenberg et al. 2015, "Striving for Simplicity: The All Convolutional Net")
back-propagates the target score to the input image, but at every ReLU lets a gradient through only where
the ReLU's output was positive and the incoming gradient is positive:
``grad_in = clamp(grad_out, min=0) * (output > 0)``. Guided Grad-CAM (Selvaraju et al. 2017) multiplies
that image by the upsampled Grad-CAM map.

How the ReLUs are changed: a :class:`torch.overrides.TorchFunctionMode`, active only during the guided
forward, routes every ReLU *call* through an autograd function with the guided backward. The forward values
are unchanged and nothing on the model is modified, so there is nothing to restore but the mode itself,
which a ``with`` block exits also on error.

Handled (forward values identical, backward guided): ``nn.ReLU`` modules, in-place or not (they call
``F.relu``), ``F.relu(x)``, ``F.relu(x, inplace=True)``, ``F.relu_``, ``torch.relu``, ``torch.relu_``,
``x.relu()`` and ``x.relu_()``. Not handled (they keep their plain gradient): ReLU written another way
(``x.clamp(min=0)``, ``torch.maximum(x, 0)``), other activations (``ReLU6``, ``LeakyReLU``, ``GELU``...),
and ReLUs run outside Python's dispatch (TorchScript modules, C++ extensions, direct ``torch.ops.aten``
calls). A model with no handled ReLU gets the plain input gradient, with a warning.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.overrides import TorchFunctionMode

from ..core.errors import caller_stacklevel
from ..core.maps import normalize_maps, upsample_maps
from ..core.methods import LAYER_METHODS, LayerMethod, LayerTensors
from ..core.targets import Target, select_scores

__all__ = [
    "GUIDED_METHODS",
    "GuidedMethod",
    "GuidedReLUMode",
    "guided_backprop",
    "guided_gradcam",
    "saliency_magnitude",
]

_RELU_CALLS = frozenset({F.relu, torch.relu, torch.relu_, Tensor.relu, Tensor.relu_})
_IN_PLACE_CALLS = frozenset({torch.relu_, Tensor.relu_})


class _GuidedReLU(torch.autograd.Function):
    """ReLU forward; backward ``clamp(grad, min=0) * (output > 0)``."""

    @staticmethod
    def forward(ctx: Any, x: Tensor) -> Tensor:
        output = torch.relu(x)
        ctx.save_for_backward(output)
        return output

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> Tensor:
        (output,) = ctx.saved_tensors
        guided: Tensor = grad.clamp(min=0) * (output > 0)
        return guided


class GuidedReLUMode(TorchFunctionMode):
    """While active, every ReLU call (see the module docstring for which) gets the guided backward.

    Attributes:
        calls: how many ReLU calls were routed so far.
    """

    def __init__(self) -> None:
        super().__init__()
        self.calls = 0

    def __torch_function__(
        self, func: Any, types: Any, args: tuple[Any, ...] = (), kwargs: dict[str, Any] | None = None
    ) -> Any:
        kwargs = kwargs or {}
        if func not in _RELU_CALLS:
            return func(*args, **kwargs)
        x = args[0] if args else kwargs["input"]
        in_place = func in _IN_PLACE_CALLS or bool(kwargs.get("inplace", args[1] if len(args) > 1 else False))
        self.calls += 1
        output = _GuidedReLU.apply(x)
        if in_place:
            # Same values as the in-place ReLU; the copy's backward hands the gradient to the guided output.
            return x.copy_(output)
        return output


def guided_backprop(model: nn.Module, inputs: Tensor, target: Target = "predicted") -> Tensor:
    """Guided Backpropagation saliency of ``inputs`` for ``target``.

    Runs ``model`` as it is (the engine puts it in eval mode first) on a copy of ``inputs`` that requires
    grad, inside :class:`GuidedReLUMode`, and takes ``torch.autograd.grad`` of the summed target scores
    with respect to that copy; parameter ``.grad`` is never touched.

    Cost: one forward with the whole graph recorded (the input gradient needs it) and one backward to the
    input.

    Args:
        model: the network.
        inputs: ``[B, C, H, W]`` float images on the model's device.
        target: as for :func:`cam_callback.compute_cam`.

    Returns:
        ``[B, C, H, W]`` float32, signed, on the inputs' device (C is the inputs' channel count).
    """
    x = inputs.detach().clone().requires_grad_(True)
    mode = GuidedReLUMode()
    with torch.enable_grad():
        with mode:
            outputs = model(x)
        scores, _ = select_scores(outputs, target)
        if not scores.requires_grad:
            raise RuntimeError("guided-backprop: the target scores do not depend on the inputs")
        (gradient,) = torch.autograd.grad(scores.sum(), x)
    if mode.calls == 0:
        warnings.warn(
            "guided-backprop: no ReLU call was seen in the forward pass (only nn.ReLU, F.relu, torch.relu "
            "and Tensor.relu are guided); the saliency is the plain input gradient",
            stacklevel=caller_stacklevel(),
        )
    return gradient.detach().float()


def guided_gradcam(saliency: Tensor, cam: Tensor) -> Tensor:
    """Guided Grad-CAM: ``saliency [B, C, H, W]`` times the Grad-CAM map ``cam [B, h, w]``.

    The map is upsampled to ``(H, W)`` (bilinear) and normalised to [0, 1] per image, as it is shown, then
    multiplied into every channel. Returns ``[B, C, H, W]`` float32, signed.
    """
    shown = normalize_maps(upsample_maps(cam.float(), (int(saliency.shape[-2]), int(saliency.shape[-1]))))
    return saliency.float() * shown.unsqueeze(1)


def saliency_magnitude(saliency: Tensor) -> Tensor:
    """``[B, C, H, W] -> [B, H, W]``: the largest absolute value over channels, for generic consumers."""
    return saliency.abs().amax(dim=1)


@dataclass(frozen=True)
class GuidedMethod:
    """A method built on the guided saliency: one guided forward and backward to the input for the batch.

    Attributes:
        name: the registry name.
        layer_part: the layer method whose map multiplies the saliency (Grad-CAM for Guided Grad-CAM), or
            None for the plain saliency (Guided Backpropagation).
    """

    name: str
    layer_part: LayerMethod | None = None

    @property
    def needs_gradients(self) -> bool:
        """Whether the shared pass must back-propagate to the layer (for the layer part)."""
        return self.layer_part is not None and self.layer_part.needs_gradients

    def layer_map(self, layer: LayerTensors) -> Tensor | None:
        """The layer part's raw map ``[B, h, w]`` from the shared pass, or None without a layer part."""
        return self.layer_part.layer_map(layer) if self.layer_part is not None else None

    def saliency(self, guided: Tensor, layer_map: Tensor | None) -> Tensor:
        """The method's signed ``[B, C, H, W]`` image from the batch's guided saliency and its layer map."""
        if self.layer_part is None:
            return guided
        if layer_map is None:
            raise ValueError(f"{self.name} needs the map of its layer part ({self.layer_part.name})")
        return guided_gradcam(guided, layer_map)


GUIDED_METHODS: dict[str, GuidedMethod] = {
    "guided-backprop": GuidedMethod("guided-backprop"),
    "guided-gradcam": GuidedMethod("guided-gradcam", LAYER_METHODS["gradcam"]),
}
"""The methods that need the guided pass, by name."""
