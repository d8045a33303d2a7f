"""What a layer's output looks like: the prefix tokens a transformer puts first, channels-last outputs."""

from __future__ import annotations

import warnings

from torch import Tensor, nn

from ..core.errors import caller_stacklevel

__all__ = ["channel_count", "prefix_tokens", "warn_if_channels_last"]


def prefix_tokens(model: nn.Module, layer: str) -> int | None:
    """``num_prefix_tokens`` of the innermost module on the path to ``layer`` that has one, else None.

    timm's vision transformers declare it: 1 (a class token), 1 + 4 with register tokens, 4 with register
    tokens and no class token (the ``*_reg4_gap_*`` models), 0 with neither.
    """
    found = getattr(model, "num_prefix_tokens", None)
    module: nn.Module | None = model
    for part in layer.split("."):
        module = getattr(module, part, None) if module is not None else None
        if isinstance(module, nn.Module):
            found = getattr(module, "num_prefix_tokens", found)
    return int(found) if isinstance(found, int) and not isinstance(found, bool) else None


def channel_count(module: nn.Module) -> int | None:
    """The size of the last one-dimensional parameter of ``module`` (its output channels, for most layers)."""
    normalized = getattr(module, "normalized_shape", None)
    if isinstance(normalized, tuple) and normalized:
        return int(normalized[-1])
    last = None
    for parameter in module.parameters():
        if parameter.dim() == 1:
            last = int(parameter.shape[0])
    return last


def warn_if_channels_last(name: str, module: nn.Module, output: Tensor) -> bool:
    """Warn (and return True) when a 4-D output looks channels-last ``[B, h, w, C]``.

    That is: its last dimension equals the layer's channel count (the size of its last one-dimensional
    parameter, or a LayerNorm's shape) and its second does not, as for timm's Swin stages and ConvNeXt
    block internals; read as ``[B, C, h, w]`` its height would be taken for channels. This catches the
    early stages too, where the last dimension is not much larger than the height.
    """
    if output.dim() != 4:
        return False
    count = channel_count(module)
    if count is None or count != output.shape[-1] or count == output.shape[1]:
        return False
    warnings.warn(
        f"layer {name!r} gives {tuple(output.shape)}, which looks channels-last [B, h, w, C] (its last "
        f"dimension is the layer's {output.shape[-1]} channels); pass reshape='nhwc', or the map is wrong",
        UserWarning,
        stacklevel=caller_stacklevel(),
    )
    return True
