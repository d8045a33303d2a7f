"""How the callback tells the user: a warning once per cause, and the skip-or-raise rule of ``strict``."""

from __future__ import annotations

import logging
import warnings
from collections.abc import Callable, Iterable, Sequence

from ..sinks import WriteFailure
from ..sinks.atomic import describe_records

__all__ = ["Reporter"]

_WRITE_FAILURE = "write-failure"


class Reporter:
    """Warnings of one run of one callback, each said once, and its failures under ``strict``.

    Args:
        owner: the callback's class name, which starts every message.
        strict: re-raise a validation's failure instead of warning and skipping it.
        info: prints a line of information (Lightning's ``rank_zero_info``); None: the ``cam_callback``
            logger of :mod:`logging`, at level INFO.
    """

    def __init__(self, owner: str, strict: bool, info: Callable[[str], None] | None = None) -> None:
        self.owner = owner
        self.strict = strict
        self.info = info if info is not None else logging.getLogger("cam_callback").info
        self._said: set[str] = set()
        self._told: set[str] = set()

    def tell(self, key: str, message: str) -> None:
        """Say ``message`` as information (no warning) unless something under ``key`` was told in this run."""
        if key not in self._told:
            self._told.add(key)
            self.info(f"{self.owner}: {message}")

    def once(self, key: str, message: str, category: type[Warning] = UserWarning) -> None:
        """Warn ``message`` (a ``category``) unless a warning under ``key`` was given in this run."""
        if key not in self._said:
            self._said.add(key)
            warnings.warn(f"{self.owner}: {message}", category, stacklevel=3)

    def skip(self, error: Exception, what: str) -> None:
        """Warn that ``what`` was skipped because of ``error`` (``RuntimeWarning``); re-raise it if strict."""
        if self.strict:
            raise error
        message = f"{self.owner} skipped {what}: {type(error).__name__}: {error}"
        warnings.warn(message, RuntimeWarning, stacklevel=3)

    def writer_failures(self, errors: Iterable[Exception], *, quiet: bool = False) -> None:
        """Report what the background writer failed to write (``quiet``: warn even when strict).

        A :class:`~cam_callback.sinks.WriteFailure` (a full disk, say) whose records wait for the next write
        says nothing yet; the first one that loses records is warned once, naming the tags and steps lost
        (see :meth:`unwritten` for what is still waiting when the run ends). Later losses of the run are not
        warned again.
        """
        for error in errors:
            if isinstance(error, WriteFailure) and not (self.strict and not quiet):
                if error.lost:
                    message = (
                        f"could not write {error.where} ({error.error}); lost: {describe_records(error.lost)}"
                        ". While writing fails, only the latest validation's images and numbers are kept to "
                        "write later; later losses of this run are not warned again"
                    )
                    self.once(_WRITE_FAILURE, message, RuntimeWarning)
            elif quiet:
                message = f"{self.owner} could not write: {type(error).__name__}: {error}"
                warnings.warn(message, RuntimeWarning, stacklevel=3)
            else:
                self.skip(error, "writing some maps of an earlier validation")

    def unwritten(self, records: Sequence[tuple[str, int]]) -> None:
        """Warn (once a run, with the write failures) that ``records`` were still waiting as the run ended."""
        if records:
            message = (
                "could not write everything before the run ended (writing kept failing); lost: "
                f"{describe_records(records)}"
            )
            self.once(_WRITE_FAILURE, message, RuntimeWarning)
