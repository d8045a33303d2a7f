"""cam_callback: watch where a vision model looks while it trains.

The functional core (``compute_cam``, ``CAMEngine``) needs only torch; ``GradCAMCallback`` (the
``pytorch_lightning`` flavour) is imported on first use. For the unified ``lightning`` package use
``cam_callback.lightning.GradCAMCallback``.
"""

from typing import Any

from .engine import CAMEngine, CAMResult, compute_cam
from .guided import saliency_to_image
from .layers import resolve_layer
from .maps import normalize_maps, upsample_maps
from .methods import method_names
from .tokens import tokens_to_grid

__all__ = [
    "CAMEngine",
    "CAMResult",
    "GradCAMCallback",
    "compute_cam",
    "method_names",
    "normalize_maps",
    "resolve_layer",
    "saliency_to_image",
    "tokens_to_grid",
    "upsample_maps",
]


def __getattr__(name: str) -> Any:
    if name == "GradCAMCallback":
        from .pl import GradCAMCallback

        return GradCAMCallback
    raise AttributeError(f"module 'cam_callback' has no attribute {name!r}")
