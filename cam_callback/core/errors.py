"""The error of a setting that cannot work, however it came in, and where this package's warnings point."""

from __future__ import annotations

import sys
from pathlib import Path

__all__ = ["AttentionWarning", "CAMConfigurationError", "caller_stacklevel"]

_PACKAGE = str(Path(__file__).resolve().parents[1])


class CAMConfigurationError(ValueError):
    """A setting that cannot work with this model or data; the callback raises it even when not strict.

    The callback raises it before the first training step, when the fixed batch is read and the run's first
    maps are computed (see :mod:`cam_callback.callback.preflight`); the engine raises it when it cannot pick
    a layer by itself. The message names the setting and what would work; the error that revealed it is
    chained as ``__cause__``.
    """


class AttentionWarning(UserWarning):
    """The maps say the model looks at a fixed place whatever the object (on the image's border, maybe).

    The callback warns once per (layer, method, samples) of a run, on global rank 0, naming the number, its
    value, the threshold and the images' tag to look at. A shortcut (a watermark, a frame, a corner mark)
    is the usual reason. Silence it with ``alarm=False`` or a ``warnings`` filter on this class.
    """


def caller_stacklevel() -> int:
    """The ``stacklevel`` that makes a warning raised here point at the first caller outside this package.

    Call it as ``warnings.warn(message, category, stacklevel=caller_stacklevel())``: however deep the call
    (``compute_cam`` -> engine -> diagnostics), the warning names the user's line, not ours.
    """
    frame = sys._getframe(1)  # the function that warns: stacklevel 1
    level = 1
    while frame is not None and str(Path(frame.f_code.co_filename).resolve()).startswith(_PACKAGE):
        frame = frame.f_back  # type: ignore[assignment]
        level += 1
    return level
