"""Warnings about maps that cannot be right: every sample's map zero at a layer."""

from __future__ import annotations

import warnings
from collections.abc import Mapping

from torch import Tensor, nn

from .auto_layer import known_family_layer

__all__ = ["warn_if_all_zero"]


def warn_if_all_zero(model: nn.Module, raw: Mapping[tuple[str, str], Tensor], skip: set[str]) -> list[str]:
    """Warn once per (layer, method) whose map is zero for every sample; return their ``layer/method`` names.

    A map zero everywhere for the whole batch means the target's gradient (or, for Eigen-CAM, the
    activation's main component) does not reach the layer's positions: a ViT's last block, for example,
    reaches the head only through its class token, so its patch tokens get no gradient. The warning names a
    better layer when the model is of a known family (:func:`~cam_callback.capture.auto_layer.choose_layer`).
    Methods named in ``skip`` (the guided ones, whose maps are input saliencies) are not checked.
    """
    flagged = []
    for (layer, method), maps in raw.items():
        if method in skip or maps.numel() == 0 or bool(maps.abs().amax() > 0):
            continue
        flagged.append(f"{layer}/{method}")
        better = known_family_layer(model)
        if better is not None and better.layer != layer:
            fix = f"use layer {better.layer!r} with reshape={better.reshape!r} ({better.reason})"
        else:
            fix = "use an earlier layer (for a ViT, a block's first LayerNorm, e.g. 'blocks.N.norm1')"
        warnings.warn(
            f"every {method} map at layer {layer!r} is zero for all {len(maps)} samples: the target's "
            "gradient does not reach this layer's positions (the last block of a vision transformer reaches "
            f"the head only through the class token), or the target score is constant; {fix}",
            UserWarning,
            stacklevel=3,
        )
    return flagged
