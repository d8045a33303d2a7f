"""Parser errors as a person meets them: the callback's own message first and short, the rest on request.

LightningCLI reports a bad option value (``method=gradcm``) inside a long account of every type it tried
("Does not validate against any of the Union subtypes", a Namespace dump). The callback's and the demo's
own messages name the argument in backticks and list the valid values; that line alone is shown, with a
word on how to see the parser's full report (``CAM_CALLBACK_FULL_ERRORS=1``).
"""

from __future__ import annotations

import argparse
import importlib
import inspect
import os
import re
from typing import Any

from ..callback.core import CAMCallbackCore
from ..capture.layers import resolve_layer
from ..core.checks import closest

__all__ = ["FULL_ERRORS", "ShortErrors", "explain", "own_message", "unknown_option"]

FULL_ERRORS = "CAM_CALLBACK_FULL_ERRORS"
"""Set this environment variable (to anything but empty) to see the parser's full report."""

_OWN = re.compile(r"^[\s-]*(`[A-Za-z_][\w.]*`.*)$", re.MULTILINE)


def own_message(message: str) -> str | None:
    """The first line of ``message`` that is one of this project's errors (it starts with a `name`)."""
    found = _OWN.search(message)
    return found.group(1).strip() if found else None


_UNKNOWN = re.compile(
    r"class_path '(?P<cls>[\w.]+)':\s*"
    r"(?:Option '(?P<option>[^']+)' is not accepted"  # jsonargparse 4.3x
    r"|Validation failed: No action for key \"(?P<key_option>[^\"]+)\" to check its value)"  # 4.27
)
_KEY = re.compile(r'Parser key "(?P<key>[^"]+)"')


def _parameters(class_path: str) -> list[str]:
    """The keyword arguments of the class at ``class_path`` (none when it cannot be imported)."""
    module_name, _, name = class_path.rpartition(".")
    try:
        cls = getattr(importlib.import_module(module_name), name)
        parameters = inspect.signature(cls.__init__).parameters.values()
    except (ImportError, AttributeError, ValueError, TypeError):
        return []
    return [p.name for p in parameters if p.name != "self" and not str(p).startswith("*")]  # no *args


def unknown_option(message: str) -> str | None:
    """One line for a parser report of an option the class does not take, with the nearest one it does.

    ``--trainer.callbacks.init_args.alpah=0.3`` is reported as
    ``--trainer.callbacks.init_args.alpah: GradCAMCallback takes no option 'alpah' (did you mean 'alpha'?)``.
    """
    found = _UNKNOWN.search(message)
    if found is None:
        return None
    class_path, option = found.group("cls"), found.group("option") or found.group("key_option")
    key = _KEY.search(message)
    where = f"--{key.group('key')}.init_args.{option}" if key else f"`{option}`"
    near = closest(option, _parameters(class_path), count=1)
    hint = f" (did you mean {near[0]!r}?)" if near else ""
    return f"{where}: {class_path.rpartition('.')[2]} takes no option {option!r}{hint}"


def explain(error: BaseException) -> str:
    """What to print for a refused command line: the own message and a hint, or the whole report."""
    message = str(error)
    own = own_message(message) or unknown_option(message)
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
