"""``GradCAMCallback`` for the ``pytorch_lightning`` package (``from cam_callback import GradCAMCallback``)."""

from __future__ import annotations

from pytorch_lightning import Callback

from .callback import CAMCallbackCore

__all__ = ["GradCAMCallback"]


class GradCAMCallback(CAMCallbackCore, Callback):
    __doc__ = CAMCallbackCore.__doc__
