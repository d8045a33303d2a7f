"""Parser errors as a person meets them: the callback's own message first and short, the rest on request.

LightningCLI reports a bad option value (``method=gradcm``) inside a long account of every type it tried
("Does not validate against any of the Union subtypes", a Namespace dump). The callback's and the demo's
own messages name the argument in backticks and list the valid values; that line alone is shown, with a
word on how to see the parser's full report (``CAM_CALLBACK_FULL_ERRORS=1``).
"""

from __future__ import annotations

import argparse
import os
import re
from typing import Any

from ..callback.core import CAMCallbackCore
from ..capture.layers import resolve_layer

__all__ = ["FULL_ERRORS", "ShortErrors", "explain", "own_message"]

FULL_ERRORS = "CAM_CALLBACK_FULL_ERRORS"
"""Set this environment variable (to anything but empty) to see the parser's full report."""

_OWN = re.compile(r"^[\s-]*(`[A-Za-z_][\w.]*`.*)$", re.MULTILINE)


def own_message(message: str) -> str | None:
    """The first line of ``message`` that is one of this project's errors (it starts with a `name`)."""
    found = _OWN.search(message)
    return found.group(1).strip() if found else None


def explain(error: BaseException) -> str:
    """What to print for a refused command line: the own message and a hint, or the whole report."""
    message = str(error)
    own = own_message(message)
    if own is None or os.environ.get(FULL_ERRORS):
        return f"error: {message}"
    return f"error: {own}\n(set {FULL_ERRORS}=1 to see the parser's full report)"


_PARSE_ERRORS = (ValueError, TypeError, argparse.ArgumentError)


class ShortErrors:
    """A LightningCLI mixin: a refused parse or build exits (status 1) with :func:`explain`'s message.

    Needs the parsers built with ``exit_on_error=False`` (as :func:`~.cli.run_cli` does), so that errors
    come here instead of being printed whole.
    """

    def parse_arguments(self, parser: Any, args: Any) -> None:
        """Parse, turning a parser error into a short message."""
        try:
            super().parse_arguments(parser, args)  # type: ignore[misc]
        except _PARSE_ERRORS as error:
            raise SystemExit(explain(error)) from None

    def instantiate_classes(self) -> None:
        """Build the model, data and trainer, turning an argument error into a short message."""
        try:
            super().instantiate_classes()  # type: ignore[misc]
        except _PARSE_ERRORS as error:
            raise SystemExit(explain(error)) from None

    def before_fit(self) -> None:
        """Check every CAM callback's layers against the model before the trainer creates any log folder."""
        try:
            for callback in self.trainer.callbacks:  # type: ignore[attr-defined]
                if isinstance(callback, CAMCallbackCore):
                    for layer in callback.layers:
                        resolve_layer(self.model, layer)  # type: ignore[attr-defined]
        except ValueError as error:
            raise SystemExit(explain(error)) from None

    before_validate = before_fit
