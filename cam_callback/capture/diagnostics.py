"""Warnings about maps that cannot be right: every sample's map zero at a layer."""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from collections.abc import Set as AbstractSet

from torch import Tensor, nn

from ..core.errors import caller_stacklevel
from .auto_layer import known_family_layer

__all__ = ["warn_if_all_zero"]


def _other_methods(method: str) -> str:
    others = [m for m in ("layercam", "hirescam") if m != method]
    return " or ".join(repr(m) for m in others)


def warn_if_all_zero(
    model: nn.Module,
    raw: Mapping[tuple[str, str], Tensor],
    skip: AbstractSet[str],
    zero_gradients: AbstractSet[str] = frozenset(),
) -> list[str]:
    """Warn per (layer, method) whose map is zero for every sample; return their ``layer/method`` names.

    Two causes, told apart by ``zero_gradients`` (the layers whose gradient was zero everywhere): the
    target's gradient does not reach the layer (a ViT's last block reaches the head only through its class
    token, so its patch tokens get none), and the warning names a better layer when the model is of a known
    family (:func:`~cam_callback.capture.auto_layer.known_family_layer`); or the weighted sum is negative at
    every position, so the ReLU leaves nothing. Methods named in ``skip`` (the guided ones, whose maps are
    input saliencies) are not checked.
    """
    flagged = []
    for (layer, method), maps in raw.items():
        if method in skip or maps.numel() == 0 or bool(maps.abs().amax() > 0):
            continue
        flagged.append(f"{layer}/{method}")
        if layer not in zero_gradients:
            warnings.warn(
                f"every {method} map at layer {layer!r} is zero for all {len(maps)} samples: the weighted "
                "activations are negative at every position, so the ReLU leaves nothing (the layer holds "
                f"evidence against the target); try {_other_methods(method)}, another target or layer",
                UserWarning,
                stacklevel=caller_stacklevel(),
            )
            continue
        better = known_family_layer(model)
        if better is not None and better.layer != layer:
            fix = f"use layer {better.layer!r} with reshape={better.reshape!r} ({better.reason})"
        else:
            fix = "use an earlier layer (in a ViT, a block's first LayerNorm, e.g. 'blocks.N.norm1')"
        warnings.warn(
            f"every {method} map at layer {layer!r} is zero for all {len(maps)} samples: the target's "
            "gradient is zero at every position of this layer: nothing after it passes the target's "
            "dependence on these positions back (a ReLU after it that is off everywhere, or, in a vision "
            f"transformer's last block, a head that reads only the class token); {fix}",
            UserWarning,
            stacklevel=caller_stacklevel(),
        )
    return flagged
