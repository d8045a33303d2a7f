"""The run's first maps, checked: settings that cannot work stop the run before its first training step.

The callback computes its first maps of a run when training starts (a step-0 frame), through the same
path as every validation: on the real model and the real fixed batch, in eval mode, the model and the RNG
left as found. Whatever fails there (a class index out of range, a layer without a spatial output, a key the
batches lack, a ``mean`` of the wrong length, ...) cannot work at any later validation either, so it becomes
a :class:`CAMConfigurationError` on every rank, strict or not. After that first success, a failure warns
and skips that validation's maps (``strict=True`` re-raises): by then it is a fault of the moment, not of the
settings. One failure is of the moment even then: a detector that keeps no box yet (an untrained one)
warns and the run goes on.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable

from ..core.errors import CAMConfigurationError
from ..core.targets import NoDetectionsError
from .trainer import TrainerLike

__all__ = ["CAMConfigurationError", "check_first_maps"]


def _reason(error: BaseException) -> str:
    if isinstance(error, KeyError) and len(error.args) == 1 and isinstance(error.args[0], str):
        return error.args[0]  # str(KeyError) adds quotes around its message
    return str(error) or type(error).__name__


def check_first_maps(trainer: TrainerLike, attempt: Callable[[], None], when: str) -> None:
    """Run ``attempt`` (the run's first maps) and stop the run on every rank if it fails.

    Every rank calls this at the same point (it broadcasts rank 0's verdict, so a rank that does not compute
    the maps stops too instead of waiting for rank 0 forever).

    Raises:
        CAMConfigurationError: ``attempt`` raised; the message is rank 0's.
    """
    failure: BaseException | None = None
    try:
        attempt()
    except NoDetectionsError as error:  # an untrained detector keeps no box yet: a fault of the moment
        note = f"skipped the first maps {when}: {type(error).__name__}: {error}"
        warnings.warn(note, RuntimeWarning, stacklevel=2)
    except Exception as error:  # noqa: BLE001 - every failure here is the settings' (see the module)
        failure = error
    message: str | None = None
    if failure is not None:
        message = _reason(failure)
        if not isinstance(failure, CAMConfigurationError):
            message = (
                f"{message} (found computing the first maps on the fixed batch {when}; such a setting cannot "
                "work at any validation, so the run stops, strict or not)"
            )
    message = trainer.strategy.broadcast(message, src=0)
    if message is not None:
        raise CAMConfigurationError(message) from failure
