"""The Lightning floor: when to explain, the fixed batch, the history, what to publish, and the two shells.

Importing this package imports no Lightning; :mod:`.pl` and :mod:`.lightning` do, each for its namespace.
"""

from ..core.errors import CAMConfigurationError
from .core import CAMCallbackCore
from .history import MapHistory
from .options import CallbackOptions
from .publishing import Display
from .samples import FixedBatch, take_fixed_batch
from .trainer import LightningNamespace, TrainerLike

__all__ = [
    "CAMCallbackCore",
    "CAMConfigurationError",
    "CallbackOptions",
    "Display",
    "FixedBatch",
    "LightningNamespace",
    "MapHistory",
    "TrainerLike",
    "take_fixed_batch",
]
