"""``GradCAMCallback`` for the unified ``lightning`` package (``lightning.pytorch``).

Use it with ``lightning.pytorch.Trainer`` and its LightningCLI (``cam_callback.lightning.GradCAMCallback``);
the two packages' ``Callback`` classes are different class trees. The hooks' bodies are the core's
(:class:`~cam_callback.callback.core.CAMCallbackCore`, with ``@override``); this class declares its
namespace: the ``Callback`` base that LightningCLI checks, and the loggers and strategies treated specially.
"""

from __future__ import annotations

from lightning.pytorch import Callback, loggers, strategies
from lightning.pytorch.utilities import rank_zero_info

from .core import CAMCallbackCore
from .trainer import LightningNamespace

__all__ = ["GradCAMCallback"]


class GradCAMCallback(CAMCallbackCore, Callback):
    """Logs class-activation maps of a fixed validation batch at every selected validation.

    The callback for the unified ``lightning`` package (``lightning.pytorch``); its arguments and behaviour
    are those of :class:`~cam_callback.callback.core.CAMCallbackCore` (options: the README's option table).
    """

    namespace = LightningNamespace.of(loggers, strategies, rank_zero_info)
