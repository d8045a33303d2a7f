"""After a command-line fit: where the run went, its summary images, and how to look at it."""

from __future__ import annotations

import shlex
import sys
from pathlib import Path
from typing import Any

__all__ = ["RunReport", "run_report"]


def run_report(trainer: Any) -> str | None:
    """A few lines naming the run folder, the summary PNG files and the TensorBoard command; None off rank 0.

    Reads the first logger with a ``log_dir`` (``trainer.log_dir`` broadcasts, so it is not used here).
    """
    if not trainer.is_global_zero:
        return None
    folder = next((Path(lg.log_dir) for lg in trainer.loggers if getattr(lg, "log_dir", None)), None)
    if folder is None:
        runs = Path(trainer.default_root_dir).glob("cam_logs/version_*")
        found = sorted(runs, key=lambda p: p.stat().st_mtime)
        folder = found[-1] if found else None
    if folder is None:
        return None
    lines = [f"run folder: {folder}"]
    lines += [f"summary: {path}" for path in sorted(folder.glob("cam_summary_*.png"))]
    if any(_is_tensorboard(logger) for logger in trainer.loggers):
        logdir = shlex.quote(str(folder.parent))
        lines.append(f"view it: tensorboard --logdir {logdir} --samples_per_plugin images=1000")
    return "\n".join(lines)


def _is_tensorboard(logger: Any) -> bool:
    """A ``TensorBoardLogger`` of either namespace, or a subclass (read by name: no Lightning import)."""
    return any(cls.__name__ == "TensorBoardLogger" for cls in type(logger).__mro__)


class RunReport:
    """A LightningCLI mixin: after ``fit``, rank 0 writes :func:`run_report` to standard output, once."""

    def after_fit(self) -> None:
        """Say where the run went."""
        report = run_report(self.trainer)  # type: ignore[attr-defined]
        if report:
            sys.stdout.write(report + "\n")
