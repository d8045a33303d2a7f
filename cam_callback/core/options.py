"""The engine's options, validated once.

Shared by :class:`~cam_callback.CAMEngine`, ``compute_cam`` and the callback, so one wrong value gets one
message whichever way it came in.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from .checks import check_bool, check_int
from .smoothing import DEFAULT_SCALES, check_scales
from .tokens import ActivationReshape, resolve_reshape

__all__ = ["CAMOptions"]


@dataclass(frozen=True)
class CAMOptions:
    """How the engine computes its maps (every field has a working default).

    Attributes:
        reshape: turns a layer's output into ``[B, C, h, w]``: None, a callable, or a string such as
            ``"tokens"`` / ``"tokens:HxW"`` (see :func:`cam_callback.core.tokens.resolve_reshape`).
        eigen_smooth: replace each weighted channel sum by its first principal component.
        aug_smooth: average each map over left-right flips and the resizes ``aug_scales``.
        aug_scales: resize factors for ``aug_smooth`` (stored as a tuple of floats).
        chunk_size: perturbed copies per forward for Score-CAM and Ablation-CAM.
        reshape_fn: ``reshape`` resolved to a function (or None); derived, not an argument.

    Raises:
        TypeError: a value of the wrong type. ValueError: a value out of range or an unknown ``reshape``.
    """

    reshape: ActivationReshape | str | None = None
    eigen_smooth: bool = False
    aug_smooth: bool = False
    aug_scales: Sequence[float] = DEFAULT_SCALES
    chunk_size: int = 64
    reshape_fn: ActivationReshape | None = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        check_bool("eigen_smooth", self.eigen_smooth)
        check_bool("aug_smooth", self.aug_smooth)
        check_int("chunk_size", self.chunk_size, minimum=1)
        object.__setattr__(self, "aug_scales", check_scales(self.aug_scales))
        object.__setattr__(self, "reshape_fn", resolve_reshape(self.reshape))
