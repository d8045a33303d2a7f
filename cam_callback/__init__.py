"""cam_callback: watch where a vision model looks while it trains."""

from .engine import CAMEngine, CAMResult, compute_cam
from .layers import resolve_layer
from .maps import normalize_maps, upsample_maps
from .methods import method_names

__all__ = [
    "CAMEngine",
    "CAMResult",
    "compute_cam",
    "method_names",
    "normalize_maps",
    "resolve_layer",
    "upsample_maps",
]
