"""cam_callback: watch where a vision model looks while it trains.

The floors, each importing only from those below it:

- :mod:`cam_callback.core`: torch only; the formulas, maps, targets, tokens, drift, smoothing, checks;
- :mod:`cam_callback.capture`: runs a model: hooks, layers, the methods' passes, the engine;
- :mod:`cam_callback.render`: colour maps, display images, grids, captions' drawing;
- :mod:`cam_callback.sinks`: where images go: encoding, event files, PNG files, W&B, MLflow, the writer;
- :mod:`cam_callback.callback`: the Lightning callback (its shells are the only Lightning importers);
- :mod:`cam_callback.demo`: the demo's classifier, data modules and command line.

The top level is small: the functional core (``compute_cam``, ``CAMEngine`` and its ``CAMResult``,
``method_names``), which needs only torch; ``ScoreTarget`` (more target objects in
:mod:`cam_callback.targets`); ``CAMConfigurationError``; ``AttentionWarning`` (the callback's alarm);
and ``GradCAMCallback`` (the ``pytorch_lightning`` flavour, imported on first use; for the unified
``lightning`` package use ``cam_callback.lightning.GradCAMCallback``).
"""

from typing import TYPE_CHECKING, Any

from .capture.engine import CAMEngine, CAMResult, compute_cam
from .capture.registry import method_names
from .core.errors import AttentionWarning, CAMConfigurationError
from .core.targets import ScoreTarget

if TYPE_CHECKING:
    from .callback.pl import GradCAMCallback

__all__ = [
    "AttentionWarning",
    "CAMConfigurationError",
    "CAMEngine",
    "CAMResult",
    "GradCAMCallback",
    "ScoreTarget",
    "compute_cam",
    "method_names",
]


def __getattr__(name: str) -> Any:
    if name == "GradCAMCallback":
        from .callback.pl import GradCAMCallback

        return GradCAMCallback
    raise AttributeError(f"module 'cam_callback' has no attribute {name!r}")
