"""Warnings about maps that cannot be right: NaN or infinite outputs and maps, every sample's map zero."""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from collections.abc import Set as AbstractSet

from torch import Tensor, nn

from ..core.errors import caller_stacklevel
from .auto_layer import known_family_layer

__all__ = ["non_finite_samples", "warn_if_all_zero", "warn_if_not_finite"]


def _other_methods(method: str) -> str:
    others = [m for m in ("layercam", "hirescam") if m != method]
    return " or ".join(repr(m) for m in others)


def non_finite_samples(values: Tensor) -> list[int]:
    """The samples (first dimension) of ``values`` holding a NaN or an infinity anywhere."""
    if values.numel() == 0:
        return []
    bad = ~values.detach().reshape(len(values), -1).isfinite().all(dim=1)
    return [int(i) for i in bad.nonzero().flatten()]


def _kinds(values: Tensor) -> str:
    found = (("NaN", values.isnan().any()), ("Inf", values.isinf().any()))
    return "/".join(kind for kind, present in found if present)


def _samples(indices: list[int]) -> str:
    shown = ", ".join(map(str, indices[:8]))
    return f"sample{'s' if len(indices) > 1 else ''} {shown}{', ...' if len(indices) > 8 else ''}"


def warn_if_not_finite(scores: Tensor, raw: Mapping[tuple[str, str], Tensor]) -> list[str]:
    """Warn when the target scores or a (layer, method)'s maps hold NaN or Inf; return what was named.

    Names what holds them (the model's output, or the method at the layer), NaN or Inf, and which samples;
    such a sample's normalised map is all NaN (:func:`~cam_callback.core.maps.normalize_maps`), so it never
    passes for a map nor for a number.
    """
    named = []
    bad_scores = non_finite_samples(scores)
    if bad_scores:
        named.append("outputs")
        warnings.warn(
            f"the model's output (the target scores) is {_kinds(scores)} for {_samples(bad_scores)} of "
            f"{len(scores)}: their maps are NaN and left out of the drift numbers (check the model's "
            "weights and inputs: training may have diverged)",
            UserWarning,
            stacklevel=caller_stacklevel(),
        )
    for (layer, method), maps in raw.items():
        bad = non_finite_samples(maps)
        if bad and bad != bad_scores:
            named.append(f"{layer}/{method}")
            warnings.warn(
                f"the {method} map at layer {layer!r} holds {_kinds(maps)} for {_samples(bad)} of "
                f"{len(maps)} (the layer's activations or gradients overflow or are NaN): these maps are NaN "
                "and left out of the drift numbers",
                UserWarning,
                stacklevel=caller_stacklevel(),
            )
    return named


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
    input saliencies) are not checked, nor maps holding NaN or Inf (:func:`warn_if_not_finite` names them).
    """
    flagged = []
    for (layer, method), maps in raw.items():
        if method in skip or maps.numel() == 0 or not bool(maps.isfinite().all()):
            continue
        if bool(maps.abs().amax() > 0):
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
