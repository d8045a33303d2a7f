"""Every CAM method by name, typed by how it is computed.

- :class:`~cam_callback.core.methods.LayerMethod`: from one layer's activations and gradients of the shared
  forward and backward (Grad-CAM and its relatives, Eigen-CAM);
- :class:`~cam_callback.capture.perturbation.PerturbationMethod`: channel weights from extra forwards of
  perturbed copies (Score-CAM, Ablation-CAM);
- :class:`~cam_callback.capture.guided.GuidedMethod`: the guided saliency, optionally times a layer map
  (Guided Backpropagation, Guided Grad-CAM);
- :class:`~cam_callback.capture.second_backward.ShapleyMethod` and
  :class:`~cam_callback.capture.second_backward.FinerMethod`: a second backward through the shared forward
  (Shapley-CAM, Finer-CAM);
- :class:`~cam_callback.capture.fullgrad.FullGradMethod`: its own forward and backward over the whole
  network (FullGrad).

:data:`ALIASES` accepts pytorch-grad-cam's spelling of a name where it differs from ours.
"""

from __future__ import annotations

from ..core.checks import check_str, closest
from ..core.methods import LAYER_METHODS, LayerMethod
from .fullgrad import FULLGRAD_METHODS, FullGradMethod
from .guided import GUIDED_METHODS, GuidedMethod
from .perturbation import PERTURBATION_METHODS, PerturbationMethod
from .second_backward import SECOND_BACKWARD_METHODS, FinerMethod, ShapleyMethod

__all__ = ["ALIASES", "METHODS", "CAMMethod", "get_method", "method_names"]

CAMMethod = LayerMethod | PerturbationMethod | GuidedMethod | ShapleyMethod | FinerMethod | FullGradMethod
"""Any registered method; each has ``name``, ``needs_gradients`` and ``layer_map(probe)``."""

METHODS: dict[str, CAMMethod] = {
    **LAYER_METHODS, **PERTURBATION_METHODS, **GUIDED_METHODS, **SECOND_BACKWARD_METHODS, **FULLGRAD_METHODS
}

ALIASES: dict[str, str] = {
    "gradcamplusplus": "gradcam++",
    "gradcamelementwise": "gradcam-elementwise",
    "kpca_cam": "kpcacam",
    "guidedbackprop": "guided-backprop",
    "guidedgradcam": "guided-gradcam",
}
"""Other spellings, lower-cased, where they differ from ours: pytorch-grad-cam's class names
(``GradCAMPlusPlus``, ``GradCAMElementWise``, ``KPCA_CAM``; its ``GradCAM``, ``XGradCAM``, ``HiResCAM``,
``LayerCAM``, ``EigenCAM``, ``EigenGradCAM``, ``ScoreCAM``, ``AblationCAM``, ``ShapleyCAM``, ``FinerCAM``,
``FullGrad`` and ``RandomCAM`` are our names already) and the guided methods without their hyphen."""


def method_names() -> list[str]:
    """The names accepted by ``method`` arguments."""
    return list(METHODS)


def get_method(name: str) -> CAMMethod:
    """Look a method up by name (case-insensitive); raises ValueError listing the valid names."""
    check_str("method", name)
    try:
        return METHODS[ALIASES.get(name.lower(), name.lower())]
    except KeyError:
        near = closest(name, METHODS)
        hint = f" (did you mean {near[0]!r}?)" if near else ""
        raise ValueError(f"`method`: unknown {name!r}; valid: {', '.join(METHODS)}{hint}") from None
