"""After a command-line fit: where the run went, its summary images, and how to look at it."""

from __future__ import annotations

import shlex
import sys
from pathlib import Path
from typing import Any

__all__ = ["CARD_HINT", "RunReport", "run_report", "tensorboard_command"]

CARD_HINT = (
    "captions: TensorBoard shrinks each image card to its width; tick \"Show actual image size\" in its "
    "settings (the gear, top right) to read them"
)
"""Said after the command: at card size the grids are scaled down and their captions cannot be read."""


def tensorboard_command(logdir: str | Path) -> str:
    """The TensorBoard command for ``logdir`` that works when pasted: this interpreter's own TensorBoard.

    ``tensorboard`` alone is only on ``PATH`` in an activated environment; ``<python> -m tensorboard.main``
    runs the one installed beside this package wherever it is pasted.
    """
    python = shlex.quote(sys.executable or "python")
    folder = shlex.quote(str(logdir))
    return f"{python} -m tensorboard.main --logdir {folder} --samples_per_plugin images=1000"


def run_report(trainer: Any) -> str | None:
    """Lines naming the run folder, the summary PNG files and the TensorBoard command; None off rank 0.

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
        lines.append(f"view it: {tensorboard_command(folder.parent)}")
        lines.append(CARD_HINT)
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
