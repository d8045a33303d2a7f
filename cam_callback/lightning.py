"""``GradCAMCallback`` for the unified ``lightning`` package.

Import it as ``from cam_callback.lightning import GradCAMCallback``.
"""

from .callback.lightning import GradCAMCallback

__all__ = ["GradCAMCallback"]
