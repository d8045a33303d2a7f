"""FullGrad: the input-gradient and every bias-gradient of the network, summed as maps at the input's size.

Srinivas & Fleuret 2019, "Full-Gradient Representation for Neural Network Visualization" (NeurIPS). The
network's output decomposes exactly into ``grad_x f . x`` plus, for every bias ``b`` of the network,
``grad_b f . b``; FullGrad shows each part as a map:

``S(x) = psi(grad_x f * x) + sum_l psi(grad_{z_l} f * b_l)``

``z_l`` the output of layer ``l``, ``b_l`` its bias broadcast over the positions. ``psi`` post-processes
each part per image as the paper's own code does: absolute value, min-max rescaling to [0, 1] over all its
channels and positions (a constant part gives zero), sum over channels, bilinear resize to the input's size
(``align_corners=False`` like every map of this project; the paper's code resizes before the channel sum,
which is the same because resizing is linear). The layers counted are those with a per-channel bias and a
``[B, C, h, w]`` output: ``Conv2d`` (with ``bias``), ``BatchNorm2d``/``SyncBatchNorm``/``InstanceNorm2d``
(with running statistics, their implicit bias ``beta - mean * gamma / sqrt(var + eps)``; without, ``beta``)
and ``GroupNorm`` (``beta``). A linear layer's bias is not spatial and is left out, as in the paper. It
ignores the ``layer`` the other methods explain: its map is the same under every layer.

How it runs, invisibly: forward hooks on those layers hand on a clone of each output (so in-place ops after
them leave the recorded one alone) and are removed in ``finally``; one forward of a copy of the inputs that
requires grad, with the whole graph recorded, and one ``torch.autograd.grad`` of the summed target scores
to the input copy and the recorded outputs, so parameter ``.grad`` is never written. Cost: one extra
forward and one backward to the input (like Guided Backpropagation).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn

from ..core.maps import normalize_maps, upsample_maps
from ..core.targets import Target, select_scores
from .probe import LayerProbe

__all__ = ["FULLGRAD_METHODS", "FullGradMethod", "fullgrad", "implicit_bias"]

_RUNNING_STATS_NORMS = (nn.BatchNorm2d, nn.SyncBatchNorm, nn.InstanceNorm2d)


def implicit_bias(module: nn.Module) -> Tensor | None:
    """The bias ``[C]`` that ``module`` adds per channel of its output in eval mode, or None if it adds none.

    See the module docstring for which layers count.
    """
    if isinstance(module, nn.Conv2d):
        return None if module.bias is None else module.bias.detach()
    if isinstance(module, _RUNNING_STATS_NORMS):
        beta = module.bias.detach() if module.affine and module.bias is not None else None
        mean, var = module.running_mean, module.running_var
        if not module.track_running_stats or mean is None or var is None:
            return beta
        scale = torch.rsqrt(var.detach() + module.eps)
        if module.affine and module.weight is not None:
            scale = scale * module.weight.detach()
        shift = -mean.detach() * scale
        return shift if beta is None else beta + shift
    if isinstance(module, nn.GroupNorm):
        return module.bias.detach() if module.affine and module.bias is not None else None
    return None


def _part_map(part: Tensor, size: tuple[int, int]) -> Tensor:
    """``psi``: ``[B, C, h, w]`` -> ``[B, H, W]``: abs, min-max per image, channel sum, resize."""
    b, c, h, w = part.shape
    rescaled = normalize_maps(part.abs().reshape(b, c * h, w)).reshape(b, c, h, w)
    return upsample_maps(rescaled.sum(dim=1), size)


def fullgrad(model: nn.Module, inputs: Tensor, target: Target = "predicted") -> Tensor:
    """The FullGrad map ``[B, H, W]`` of ``inputs`` for ``target`` (float32, non-negative, not normalised).

    Runs ``model`` as it is (the engine puts it in eval mode first). See the module docstring.
    """
    x = inputs.detach().clone().requires_grad_(True)
    biases: list[Tensor] = []  # [C] per recorded output
    recorded: list[Tensor] = []  # the layers' outputs [B, C, h, w]

    def record(bias: Tensor) -> Callable[[nn.Module, Any, Any], Any]:
        def hook(module: nn.Module, args: Any, output: Any) -> Any:
            if not isinstance(output, Tensor) or output.dim() != 4 or not output.requires_grad:
                return None
            biases.append(bias)
            recorded.append(output)
            return output.clone()  # in-place ops after the layer change the clone, not the recorded output

        return hook

    handles = []
    try:
        for module in model.modules():
            bias = implicit_bias(module)
            if bias is not None:
                handles.append(module.register_forward_hook(record(bias)))
        with torch.enable_grad():
            outputs = model(x)
            scores, _ = select_scores(outputs, target)
            if not scores.requires_grad:
                raise RuntimeError("fullgrad: the target scores do not depend on the inputs")
            gradients = torch.autograd.grad(
                scores.sum(), [x, *recorded], allow_unused=True
            )
    finally:
        for handle in handles:
            handle.remove()
    size = (int(inputs.shape[-2]), int(inputs.shape[-1]))
    total = _part_map(gradients[0].float() * x.detach().float(), size)
    recorded.clear()
    for bias, gradient in zip(biases, gradients[1:], strict=True):
        if gradient is None:  # the output does not reach the scores: a zero part
            continue
        part = gradient.float() * bias.float().to(gradient.device)[None, :, None, None]
        total = total + _part_map(part, size)
    return total


@dataclass(frozen=True)
class FullGradMethod:
    """FullGrad, computed once per batch from its own forward and backward and listed under every layer.

    Attributes:
        name: the registry name.
    """

    name: str
    needs_gradients: bool = field(default=False, init=False)

    def layer_map(self, layer: LayerProbe) -> Tensor | None:
        """None: the map does not come from the layer (the engine computes it with :func:`fullgrad`)."""
        return None

    def batch_map(self, model: nn.Module, inputs: Tensor, target: Target) -> Tensor:
        """The ``[B, H, W]`` map of the batch (see :func:`fullgrad`)."""
        return fullgrad(model, inputs, target)


FULLGRAD_METHODS: dict[str, FullGradMethod] = {"fullgrad": FullGradMethod("fullgrad")}
"""FullGrad, by name."""
