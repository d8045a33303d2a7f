"""Pick the layer to explain when none is named: known transformer families first, then the last feature map.

Known families, wherever they sit inside the model (a LightningModule's ``self.model``, say):

* timm's ``VisionTransformer`` (``blocks`` + ``num_prefix_tokens``): the last block's ``norm1``, with
  ``reshape="tokens"`` (its prefix tokens read from the model);
* torchvision's ``VisionTransformer`` (``encoder.layers``): the last encoder layer's ``ln_1``, with
  ``reshape="tokens"``;
* timm's ``SwinTransformer`` (``layers`` of stages, channels-last): the last stage, with ``reshape="nhwc"``;
* torchvision's detectors (Faster/Mask/Keypoint R-CNN, RetinaNet, FCOS): the last block of
  ``backbone.body``; its segmenters (DeepLabV3, FCN, LR-ASPP): the last block of ``backbone``.

Not the last block's output: a ViT's head reads only its class token, so its patch tokens get no gradient.
Any other model gets the last module (pooling excluded) whose output is a spatial map ``[B, C, h, w]`` with
``h * w > 1`` (``layer4`` of a ResNet, a module of ``features`` for VGG, MobileNet, EfficientNet, DenseNet),
unless tokens ``[B, N, C]`` flow after that layer (it is then a piece of an attention block, not a feature
map): that is refused, naming candidate layers.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from .hooks import explaining

__all__ = ["LayerChoice", "choose_layer", "known_family_layer"]

# torchvision's detectors and segmenters, whose heads would otherwise give the last spatial outputs
_DETECTORS = ("FasterRCNN", "MaskRCNN", "KeypointRCNN", "RetinaNet", "FCOS")
_SEGMENTERS = ("DeepLabV3", "FCN", "LRASPP")


@dataclass(frozen=True)
class LayerChoice:
    """The layer picked, the ``reshape`` it needs (None for ``[B, C, h, w]`` outputs) and why."""

    layer: str
    reshape: str | None
    reason: str


def _join(prefix: str, name: str) -> str:
    return f"{prefix}.{name}" if prefix else name


def known_family_layer(model: nn.Module) -> LayerChoice | None:
    """The layer of the first known transformer family found in ``model`` (see the module), or None."""
    for prefix, module in model.named_modules():
        kind = type(module).__name__
        blocks = getattr(module, "blocks", None)
        if kind.startswith("VisionTransformer") and isinstance(blocks, nn.Sequential) and len(blocks):
            if hasattr(module, "num_prefix_tokens") and hasattr(blocks[-1], "norm1"):
                layer = _join(prefix, f"blocks.{len(blocks) - 1}.norm1")
                return LayerChoice(layer, "tokens", "timm ViT: the last block's first LayerNorm")
        encoder = getattr(module, "encoder", None)
        layers = getattr(encoder, "layers", None)
        if kind.startswith("VisionTransformer") and isinstance(layers, nn.Sequential) and len(layers):
            last = list(layers.named_children())[-1][0]
            if hasattr(layers[-1], "ln_1"):
                layer = _join(prefix, f"encoder.layers.{last}.ln_1")
                return LayerChoice(layer, "tokens", "torchvision ViT: the last encoder layer's ln_1")
        stages = getattr(module, "layers", None)
        if kind == "SwinTransformer" and isinstance(stages, nn.Sequential) and len(stages):
            if hasattr(stages[-1], "blocks"):  # timm's stages (torchvision's Swin is a `features` stack)
                layer = _join(prefix, f"layers.{len(stages) - 1}")
                return LayerChoice(layer, "nhwc", "timm Swin: the last stage, channels-last")
        backbone = getattr(module, "backbone", None)
        body = getattr(backbone, "body", None)
        if kind in _DETECTORS and isinstance(body, nn.Module) and len(list(body.children())):
            last = list(body.named_children())[-1][0]
            layer = _join(prefix, f"backbone.body.{last}")
            return LayerChoice(layer, None, "detector: the backbone's last block")
        if kind in _SEGMENTERS and isinstance(backbone, nn.Module) and len(list(backbone.children())):
            last = list(backbone.named_children())[-1][0]
            layer = _join(prefix, f"backbone.{last}")
            return LayerChoice(layer, None, "segmenter: the backbone's last block")
    return None


def choose_layer(model: nn.Module, example: torch.Tensor) -> LayerChoice:
    """The layer to explain in ``model``, read from one forward of ``example`` (eval mode, state restored).

    Raises:
        ValueError: no module gives a spatial map, or the last one sits inside a token model; the message
            names candidate layers.
    """
    known = known_family_layer(model)
    if known is not None:
        return known
    batch = int(example.shape[0])
    order: list[tuple[str, tuple[int, ...]]] = []

    def record(name: str) -> Callable[[nn.Module, object, object], None]:
        def hook(module: nn.Module, args: object, output: object) -> None:
            if isinstance(output, torch.Tensor) and output.dim() >= 3 and output.shape[0] == batch:
                if "Pool" not in type(module).__name__:
                    order.append((name, tuple(output.shape)))

        return hook

    handles = [m.register_forward_hook(record(n)) for n, m in model.named_modules() if n]
    try:
        with explaining(model), torch.no_grad():
            model(example)
    finally:
        for handle in handles:
            handle.remove()
    spatial = [i for i, (_, shape) in enumerate(order) if len(shape) == 4 and shape[-1] * shape[-2] > 1]
    if not spatial:
        raise ValueError(
            f"`layer`: {type(model).__name__} has no module with a spatial [B, C, h, w] output; name a layer"
        )
    last = spatial[-1]
    tokens_after = [name for name, shape in order[last + 1 :] if len(shape) == 3 and shape[1] > 1]
    if tokens_after:
        candidates = list(dict.fromkeys(tokens_after))[-4:]
        raise ValueError(
            f"`layer`: cannot pick a layer of {type(model).__name__} automatically: its last spatial output, "
            f"{order[last][0]!r} {order[last][1]}, is followed by token outputs [B, N, C], so it is part of "
            "a transformer block, not a feature map. Name a layer whose tokens still reach the output and "
            f"set reshape='tokens', e.g. one of {', '.join(map(repr, candidates))} (a block's first "
            "LayerNorm is a good choice; the last block's output reaches the head only through the class "
            "token)"
        )
    return LayerChoice(order[last][0], None, "the last module with a spatial output")
