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
from dataclasses import dataclass

from torch import Tensor

__all__ = ["ActivationReshape", "TokenGrid", "resolve_reshape", "tokens_to_grid"]

ActivationReshape = Callable[[Tensor], Tensor]

_SPEC = re.compile(r"^(tokens|tokens-all)(?::(\d+)x(\d+))?$")


def tokens_to_grid(
    tokens: Tensor, grid: tuple[int, int] | None = None, drop_class_token: bool = True
) -> Tensor:
    """Lay batch-first tokens ``[B, T, C]`` out as a feature map ``[B, C, h, w]``.

    Args:
        tokens: ``[B, T, C]``; with ``drop_class_token`` the first token is the class token.
        grid: ``(h, w)`` of the patch grid, row-major; None for a square grid (``h = w = sqrt(N)``).
        drop_class_token: drop ``tokens[:, 0]`` first (True for ViT/DeiT; False for models without one).

    Returns:
        ``[B, C, h, w]``, same dtype and device (a view where possible): ``out[b, c, i, j]`` is
        ``tokens[b, 1 + i * w + j, c]`` (without the ``1 +`` when no class token is dropped).

    Raises:
        ValueError: the tokens are not 3-D, or their count does not fit the grid.
    """
    if not isinstance(tokens, Tensor) or tokens.dim() != 3:
        got = tuple(tokens.shape) if isinstance(tokens, Tensor) else type(tokens).__name__
        raise ValueError(f"`tokens` must be batch-first [B, tokens, C], got {got}")
    if drop_class_token:
        tokens = tokens[:, 1:]
    batch, count, channels = tokens.shape
    if grid is None:
        side = math.isqrt(count)
        if side * side != count:
            raise ValueError(
                f"{count} patch tokens do not form a square grid; pass `grid=(h, w)` "
                "(or reshape 'tokens:HxW')"
                + ("" if drop_class_token else ", or drop the class token")
            )
        grid = (side, side)
    height, width = int(grid[0]), int(grid[1])
    if height <= 0 or width <= 0 or height * width != count:
        raise ValueError(f"`grid` {height}x{width} does not hold the {count} patch tokens")
    return tokens.reshape(batch, height, width, channels).permute(0, 3, 1, 2)


@dataclass(frozen=True)
class TokenGrid:
    """A picklable ``reshape``: :func:`tokens_to_grid` with a fixed ``grid`` and class-token choice."""

    grid: tuple[int, int] | None = None
    drop_class_token: bool = True

    def __call__(self, tokens: Tensor) -> Tensor:
        """Apply :func:`tokens_to_grid`."""
        return tokens_to_grid(tokens, self.grid, self.drop_class_token)


def resolve_reshape(reshape: ActivationReshape | str | None) -> ActivationReshape | None:
    """Turn the ``reshape`` argument of the engine into a function (or None).

    Args:
        reshape: None (layers already give ``[B, C, h, w]``); a callable ``layer output -> [B, C, h, w]``;
            ``"tokens"`` (drop the class token, square grid); ``"tokens:HxW"`` (drop the class token, an
            H-by-W grid); ``"tokens-all"`` / ``"tokens-all:HxW"`` (keep every token, for models without a
            class token).

    Raises:
        ValueError: an unknown string. TypeError: neither a string, a callable nor None.
    """
    if reshape is None or (callable(reshape) and not isinstance(reshape, str)):
        return reshape
    if not isinstance(reshape, str):
        raise TypeError(
            f"`reshape` must be None, a callable or a string like 'tokens', got {type(reshape).__name__}"
        )
    match = _SPEC.match(reshape.strip().lower())
    if match is None:
        raise ValueError(
            f"`reshape`: unknown {reshape!r}; use 'tokens' (square grid), 'tokens:HxW' (e.g. "
            "'tokens:14x14'), 'tokens-all' / 'tokens-all:HxW' (no class token), or a callable"
        )
    kind, height, width = match.groups()
    grid = (int(height), int(width)) if height is not None else None
    if grid is not None and min(grid) <= 0:
        raise ValueError(f"`reshape`: the grid in {reshape!r} must have positive sides")
    return TokenGrid(grid, drop_class_token=kind == "tokens")
