"""The CAM engine: every (layer, method) map of a batch from one forward and one backward pass."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn

from .capture import LayerCapture, explaining
from .layers import resolve_layer
from .maps import normalize_maps, upsample_maps
from .methods import CamMethod, get_method
from .targets import Target, select_scores

__all__ = ["CAMEngine", "CAMResult", "compute_cam"]

ActivationReshape = Callable[[Tensor], Tensor]


@dataclass
class CAMResult:
    """What one engine call produced, all detached and on the inputs' device.

    Attributes:
        raw: ``{(layer, method): [B, h, w]}`` float32 maps at each layer's resolution, after the ReLU.
        outputs: the model's output for the batch (detached, as the model returned it).
        classes: the target class of each sample ``[B]``, or None when ``target`` was a callable.
        scores: the target score of each sample ``[B]`` (float32, pre-softmax).
        input_size: ``(H, W)`` of the inputs.
    """

    raw: dict[tuple[str, str], Tensor]
    outputs: Any
    classes: Tensor | None
    scores: Tensor
    input_size: tuple[int, int]
    _normalized: dict[tuple[str, str], Tensor] = field(default_factory=dict, repr=False)

    def normalized(self, layer: str, method: str) -> Tensor:
        """The ``[B, H, W]`` map upsampled to the input's size and normalised to [0, 1] per image."""
        key = (layer, method)
        if key not in self._normalized:
            self._normalized[key] = normalize_maps(upsample_maps(self.raw[key], self.input_size))
        return self._normalized[key]


def _model_dtype(model: nn.Module) -> torch.dtype | None:
    dtypes = {p.dtype for p in model.parameters() if p.is_floating_point()}
    return dtypes.pop() if len(dtypes) == 1 else None


def _as_feature_map(name: str, tensor: Tensor, reshape: ActivationReshape | None) -> Tensor:
    if reshape is not None:
        tensor = reshape(tensor)
    if tensor.dim() != 4:
        raise ValueError(
            f"layer {name!r} gives shape {tuple(tensor.shape)}, not a [B, C, h, w] feature map; pick a "
            "convolutional layer or pass `reshape` to turn its output into one"
        )
    return tensor.float()


class CAMEngine:
    """Computes several CAM methods at several layers of one model from a single forward and backward.

    Set it up once, call it on each batch. Only the part of the network after the earliest target layer is
    recorded for backward, and gradients are taken with ``torch.autograd.grad`` on the captured activations,
    so parameter ``.grad`` is never touched. The model is explained in eval mode and left exactly as found
    (train/eval flags, buffers, gradients, RNG state, hooks), also when its forward raises. Works inside
    ``torch.no_grad()`` and ``torch.inference_mode()``, and under autocast; maps are float32.

    Args:
        model: the network to explain.
        layers: one layer or several, each a dotted path (``"layer4"``, ``"features.-1"``) or the module.
        methods: one method name or several (see :func:`cam_callback.methods.method_names`).
        reshape: optional function turning a layer's output into ``[B, C, h, w]`` (for token outputs).
    """

    def __init__(
        self,
        model: nn.Module,
        layers: str | nn.Module | Sequence[str | nn.Module],
        methods: str | Sequence[str] = "gradcam",
        *,
        reshape: ActivationReshape | None = None,
    ) -> None:
        if isinstance(layers, (str, nn.Module)):
            layers = [layers]
        if isinstance(methods, str):
            methods = [methods]
        if not layers:
            raise ValueError("`layers` must name at least one layer")
        if not methods:
            raise ValueError("`methods` must name at least one method")
        self.model = model
        self.layers: dict[str, nn.Module] = dict(resolve_layer(model, layer) for layer in layers)
        self.methods: list[CamMethod] = list({m.name: m for m in map(get_method, methods)}.values())
        self.reshape = reshape
        self.needs_gradients = any(m.needs_gradients for m in self.methods)

    @property
    def layer_names(self) -> list[str]:
        """Canonical names of the target layers, in the order given."""
        return list(self.layers)

    @property
    def method_names(self) -> list[str]:
        """Names of the methods computed, in the order given."""
        return [m.name for m in self.methods]

    def __call__(self, inputs: Tensor, target: Target = "predicted") -> CAMResult:
        """Explain ``inputs`` (``[B, C, H, W]``, on the model's device) for ``target``.

        ``target``: ``"predicted"`` (the argmax of the output), a class index for all samples, one class per
        sample (sequence or 1-D tensor), or a callable ``outputs -> scores[B]``.
        """
        if not isinstance(inputs, Tensor) or inputs.dim() < 3:
            raise ValueError("`inputs` must be a batched image tensor [B, C, H, W]")
        input_size = (int(inputs.shape[-2]), int(inputs.shape[-1]))
        with explaining(self.model):
            if inputs.is_inference():
                inputs = inputs.clone()  # a normal tensor, usable outside inference mode
            dtype = _model_dtype(self.model)
            if dtype is not None and inputs.is_floating_point() and inputs.dtype != dtype:
                inputs = inputs.to(dtype)
            with LayerCapture(self.layers, track_gradients=self.needs_gradients) as capture:
                outputs = self.model(inputs)
            missing = [name for name in self.layers if name not in capture.activations]
            if missing:
                raise RuntimeError(f"layer(s) {missing} did not run during the forward pass")
            scores, classes = select_scores(outputs, target)
            activations = [capture.activations[name] for name in self.layers]
            gradients: Sequence[Tensor | None] = [None] * len(activations)
            if self.needs_gradients:
                if not scores.requires_grad:
                    raise RuntimeError("the target scores do not depend on the chosen layer(s)")
                gradients = torch.autograd.grad(scores.sum(), activations, allow_unused=True)
            raw: dict[tuple[str, str], Tensor] = {}
            for name, activation, gradient in zip(self.layers, activations, gradients, strict=True):
                if self.needs_gradients and gradient is None:
                    raise RuntimeError(f"the target scores do not depend on layer {name!r}")
                a = _as_feature_map(name, activation.detach(), self.reshape)
                g = _as_feature_map(name, gradient, self.reshape) if gradient is not None else None
                for method in self.methods:
                    raw[(name, method.name)] = method.fn(a, g)
            detached = outputs.detach() if isinstance(outputs, Tensor) else outputs
            return CAMResult(raw, detached, classes, scores.detach().float(), input_size)


def compute_cam(
    model: nn.Module,
    inputs: Tensor,
    layer: str | nn.Module,
    *,
    method: str = "gradcam",
    target: Target = "predicted",
    raw: bool = False,
) -> Tensor:
    """Class-activation maps of ``inputs`` at ``layer`` (one-shot form of :class:`CAMEngine`).

    Returns a float32 tensor on the inputs' device: ``[B, H, W]`` normalised to [0, 1] per image and
    bilinearly upsampled to the inputs' size, or with ``raw=True`` ``[B, h, w]`` at the layer's resolution,
    after the ReLU and not normalised.
    """
    engine = CAMEngine(model, layer, method)
    result = engine(inputs, target)
    name = engine.layer_names[0]
    if raw:
        return result.raw[(name, engine.method_names[0])]
    return result.normalized(name, engine.method_names[0])
