"""``GradCAMCallback`` for the unified ``lightning`` package (``lightning.pytorch``).

Use ``cam_callback.lightning.GradCAMCallback`` with ``lightning.pytorch.Trainer`` and its LightningCLI; the
two packages' ``Callback`` classes are different class trees.
"""

from __future__ import annotations

from lightning.pytorch import Callback

from .callback import CAMCallbackCore

__all__ = ["GradCAMCallback"]


class GradCAMCallback(CAMCallbackCore, Callback):
    __doc__ = CAMCallbackCore.__doc__
