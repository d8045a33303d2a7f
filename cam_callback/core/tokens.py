"""Turn a vision transformer's token outputs ``[B, 1+N, C]`` into feature maps ``[B, C, h, w]``.

CAM methods need a spatial layout; a ViT block returns one token per image patch (plus a class token
first). :func:`tokens_to_grid` drops the class token and lays the patch tokens out row by row on their
grid. :func:`resolve_reshape` turns the engine's ``reshape`` argument, a callable or a plain string fit for
YAML (``"tokens"``, ``"tokens:HxW"``), into the function.

Which layer: the last block's *output* is a poor choice in torchvision's ``VisionTransformer`` (and most
ViTs), because the head reads only the class token of it, so the gradients on the patch tokens are zero and
the maps are empty. Take a layer whose output still mixes into the class token, e.g. the first LayerNorm
of the last block, ``"encoder.layers.encoder_layer_11.ln_1"`` for ViT-B/16.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from dataclasses import dataclass, replace

from torch import Tensor

__all__ = [
    "ActivationReshape",
    "ChannelsLast",
    "LayerReshape",
    "TokenGrid",
    "channels_last_to_first",
    "resolve_reshape",
    "tokens_to_grid",
]

ActivationReshape = Callable[[Tensor], Tensor]

_SPEC = re.compile(r"^(tokens|tokens-all)(?::(\d+)x(\d+))?$")


def tokens_to_grid(
    tokens: Tensor,
    grid: tuple[int, int] | None = None,
    drop_class_token: bool = True,
    prefix_tokens: int | None = None,
) -> Tensor:
    """Lay batch-first tokens ``[B, T, C]`` out as a feature map ``[B, C, h, w]``.

    Args:
        tokens: ``[B, T, C]``: ``P`` prefix tokens (class and register tokens), then the patch tokens.
        grid: ``(h, w)`` of the patch grid, row-major; None for a square grid (``h = w = sqrt(N)``). It must
            hold exactly the ``T - P`` patch tokens.
        drop_class_token: with ``prefix_tokens`` None, ``P`` is 1 (True: ViT/DeiT) or 0 (False).
        prefix_tokens: ``P`` itself (a timm model's ``num_prefix_tokens``: 1 + 4 with register tokens).

    Returns:
        ``[B, C, h, w]``, same dtype and device (a view where possible): ``out[b, c, i, j]`` is
        ``tokens[b, P + i * w + j, c]``.

    Raises:
        ValueError: the tokens are not 3-D, or their count does not fit the grid.
    """
    if not isinstance(tokens, Tensor) or tokens.dim() != 3:
        got = tuple(tokens.shape) if isinstance(tokens, Tensor) else type(tokens).__name__
        raise ValueError(f"`tokens` must be batch-first [B, tokens, C], got {got}")
    prefix = prefix_tokens if prefix_tokens is not None else int(drop_class_token)
    if prefix < 0 or prefix >= tokens.shape[1]:
        raise ValueError(f"{prefix} prefix tokens leave no patch tokens among {tokens.shape[1]}")
    tokens = tokens[:, prefix:]
    batch, count, channels = tokens.shape
    after = f"after {prefix} prefix token{'s' if prefix != 1 else ''} " if prefix else ""
    if grid is None:
        side = math.isqrt(count)
        if side * side != count:
            raise ValueError(
                f"{count} patch tokens ({after}of {count + prefix}) do not form a square grid; pass "
                "`grid=(h, w)` (or reshape 'tokens:HxW'), or the right number of prefix tokens"
            )
        grid = (side, side)
    height, width = int(grid[0]), int(grid[1])
    if height <= 0 or width <= 0 or height * width != count:
        raise ValueError(
            f"`grid` {height}x{width} does not hold exactly the {count} patch tokens ({after}of "
            f"{count + prefix}); with register tokens, check the model's `num_prefix_tokens`"
        )
    return tokens.reshape(batch, height, width, channels).permute(0, 3, 1, 2)


class LayerReshape:
    """Base of ``reshape`` objects: ``reshape(layer_output) -> [B, C, h, w]``.

    Subclass it (and define ``__call__``) to give the callback your own reshape from YAML (``class_path`` /
    ``init_args``); in Python any callable does.
    """

    def __call__(self, outputs: Tensor) -> Tensor:
        """The layer's output as a ``[B, C, h, w]`` feature map."""
        raise NotImplementedError(f"{type(self).__name__} must define __call__(outputs) -> [B, C, h, w]")


@dataclass(frozen=True)
class TokenGrid(LayerReshape):
    """A picklable ``reshape``: :func:`tokens_to_grid` with a fixed ``grid`` and prefix-token count.

    ``prefix_tokens`` None with ``drop_class_token`` means "the model's": the engine fills it in from the
    model's ``num_prefix_tokens`` when it has one (:meth:`for_model`), else one class token is dropped.
    """

    grid: tuple[int, int] | None = None
    drop_class_token: bool = True
    prefix_tokens: int | None = None

    def __call__(self, tokens: Tensor) -> Tensor:
        """Apply :func:`tokens_to_grid`."""
        return tokens_to_grid(tokens, self.grid, self.drop_class_token, self.prefix_tokens)

    def for_model(self, prefix_tokens: int | None) -> TokenGrid:
        """This reshape with the model's ``num_prefix_tokens`` filled in (unless fixed already)."""
        if prefix_tokens is None or self.prefix_tokens is not None or not self.drop_class_token:
            return self
        return replace(self, prefix_tokens=int(prefix_tokens))


@dataclass(frozen=True)
class ChannelsLast(LayerReshape):
    """A picklable ``reshape="nhwc"``: :func:`channels_last_to_first`."""

    def __call__(self, outputs: Tensor) -> Tensor:
        """Apply :func:`channels_last_to_first`."""
        return channels_last_to_first(outputs)


def channels_last_to_first(outputs: Tensor) -> Tensor:
    """``[B, h, w, C]`` channels-last feature maps (timm Swin stages, ConvNeXt blocks) to ``[B, C, h, w]``."""
    if not isinstance(outputs, Tensor) or outputs.dim() != 4:
        got = tuple(outputs.shape) if isinstance(outputs, Tensor) else type(outputs).__name__
        raise ValueError(f"`reshape='nhwc'` expects a channels-last output [B, h, w, C], got {got}")
    return outputs.permute(0, 3, 1, 2)


def resolve_reshape(reshape: ActivationReshape | str | None) -> ActivationReshape | None:
    """Turn the ``reshape`` argument of the engine into a function (or None).

    Args:
        reshape: None (layers already give ``[B, C, h, w]``); a callable ``layer output -> [B, C, h, w]``;
            ``"tokens"`` (drop the prefix tokens, square grid: the model's ``num_prefix_tokens`` when the
            engine finds one, else one class token); ``"tokens:HxW"`` (the same, an H-by-W grid);
            ``"tokens-all"`` / ``"tokens-all:HxW"`` (keep every token); ``"nhwc"`` (channels-last
            ``[B, h, w, C]`` outputs).

    Raises:
        ValueError: an unknown string. TypeError: neither a string, a callable nor None.
    """
    if reshape is None or (callable(reshape) and not isinstance(reshape, str)):
        return reshape
    if not isinstance(reshape, str):
        raise TypeError(
            f"`reshape` must be None, a callable or a string like 'tokens', got {type(reshape).__name__}"
        )
    if reshape.strip().lower() == "nhwc":
        return ChannelsLast()
    match = _SPEC.match(reshape.strip().lower())
    if match is None:
        raise ValueError(
            f"`reshape`: unknown {reshape!r}; use 'tokens' (square grid), 'tokens:HxW' (e.g. "
            "'tokens:14x14'), 'tokens-all' / 'tokens-all:HxW' (no prefix tokens), 'nhwc' (channels-last "
            "[B, h, w, C]), or a callable"
        )
    kind, height, width = match.groups()
    grid = (int(height), int(width)) if height is not None else None
    if grid is not None and min(grid) <= 0:
        raise ValueError(f"`reshape`: the grid in {reshape!r} must have positive sides")
    return TokenGrid(grid, drop_class_token=kind == "tokens")
