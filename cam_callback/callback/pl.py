"""``GradCAMCallback`` for the ``pytorch_lightning`` package.

Import it as ``from cam_callback import GradCAMCallback``. The hooks' bodies are the core's
(:class:`~cam_callback.callback.core.CAMCallbackCore`, with ``@override``); this class declares its
namespace: the ``Callback`` base that LightningCLI checks, and the loggers and strategies treated specially.
"""

from __future__ import annotations

from pytorch_lightning import Callback, loggers, strategies
from pytorch_lightning.utilities import rank_zero_info

from .core import CAMCallbackCore
from .trainer import LightningNamespace

__all__ = ["GradCAMCallback"]


class GradCAMCallback(CAMCallbackCore, Callback):
    """Logs class-activation maps of a fixed validation batch at every selected validation.

    The callback for the ``pytorch_lightning`` package; its arguments and behaviour are those of
    :class:`~cam_callback.callback.core.CAMCallbackCore` (options: the README's option table).
    """

    namespace = LightningNamespace.of(loggers, strategies, rank_zero_info)
