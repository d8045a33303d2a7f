"""cam_callback: watch where a vision model looks while it trains.

The floors, each importing only from those below it:

- :mod:`cam_callback.core`: torch only; the formulas, maps, targets, tokens, drift, smoothing, checks;
- :mod:`cam_callback.capture`: runs a model: hooks, layers, guided and perturbation passes, the engine;
- :mod:`cam_callback.render`: colour maps, display images, grids, captions, encoding;
- :mod:`cam_callback.sinks`: where images and numbers go;
- :mod:`cam_callback.callback`: the Lightning callback (its shells are the only Lightning importers);
- :mod:`cam_callback.demo`: the demo's classifier, data modules and command line.

Target objects for segmentation, detection, multi-label and regression models are in
:mod:`cam_callback.targets`. The functional core (``compute_cam``, ``CAMEngine``) needs only torch;
``GradCAMCallback`` (the ``pytorch_lightning`` flavour) is imported on first use. For the unified
``lightning`` package use ``cam_callback.lightning.GradCAMCallback``.
"""

from typing import TYPE_CHECKING, Any

from .capture.engine import CAMEngine, CAMResult, compute_cam
from .capture.layers import resolve_layer
from .capture.registry import method_names
from .core.maps import normalize_maps, upsample_maps
from .core.options import CAMOptions
from .core.tokens import tokens_to_grid

if TYPE_CHECKING:
    from .callback.pl import GradCAMCallback

__all__ = [
    "CAMEngine",
    "CAMOptions",
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
        from .callback.pl import GradCAMCallback

        return GradCAMCallback
    if name == "saliency_to_image":  # drawing lives in the render floor, which imports OpenCV
        from .render.display import saliency_to_image

        return saliency_to_image
    raise AttributeError(f"module 'cam_callback' has no attribute {name!r}")
