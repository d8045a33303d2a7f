"""Which sink each of the run's loggers gets, and the folders of the run's own where PNG files may go.

Images go to every logger that takes them: TensorBoard (its ``SummaryWriter``), W&B (``log_image``),
MLflow (the client's ``log_image``, as run artifacts); CSV and any other logger get PNG files under their
own run folder. The numbers reach every logger through Lightning (:mod:`.metrics`), so these sinks take
images only. With no logger at all, images and a ``scalars.csv`` go to a fresh
``<default_root_dir>/cam_logs/version_<N>``. Nothing is written into a tracking store's own folders.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from torch import Tensor

from ..sinks import MlflowSink, PngSink, Sink, TensorBoardSink, WandbSink
from .trainer import LightningNamespace

__all__ = ["Destinations", "ImagesOnly", "destinations", "fresh_run_folder"]

DEFAULT_FOLDER = "cam_logs"
"""With no logger, runs are written to ``<default_root_dir>/cam_logs/version_<N>``."""


class ImagesOnly:
    """A sink that passes images on and drops numbers: Lightning already gives its logger the numbers.

    Args:
        sink: the sink that takes the images.
    """

    def __init__(self, sink: Sink) -> None:
        self.sink = sink

    def add_image(self, tag: str, image: Tensor, step: int, image_format: str = "png") -> None:
        """Pass the image on."""
        self.sink.add_image(tag, image, step, image_format)

    def add_scalar(self, tag: str, value: float, step: int) -> None:
        """Drop the number (the logger has it from Lightning's ``log_metrics``)."""

    def flush(self) -> None:
        """Flush the wrapped sink."""
        self.sink.flush()


@dataclass
class Destinations:
    """Where one run's records go.

    Attributes:
        sinks: every record goes to each.
        folders: the run folders of the run's own (TensorBoard, CSV, other loggers, no logger), where the
            summary PNG files are written too; W&B and MLflow keep theirs as logged images.
        notes: what to tell the user once (where PNG files go).
    """

    sinks: list[Sink] = field(default_factory=list)
    folders: list[Path] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def _is(logger: Any, cls: type[Any] | None) -> bool:
    return cls is not None and isinstance(logger, cls)


def fresh_run_folder(root: str | os.PathLike[str]) -> Path:
    """``<root>/cam_logs/version_<N>`` with the first N not yet taken (nothing is created)."""
    base = Path(root) / DEFAULT_FOLDER
    taken = {int(m.group(1)) for p in base.glob("version_*") if (m := re.fullmatch(r"version_(\d+)", p.name))}
    return base / f"version_{max(taken, default=-1) + 1}"


def _own_folder(logger: Any) -> Path | None:
    directory = getattr(logger, "log_dir", None) or getattr(logger, "save_dir", None)
    return Path(directory) if directory else None


def destinations(
    loggers: list[Any], namespace: LightningNamespace, default_root_dir: str, tag_prefix: str
) -> Destinations:
    """One sink per logger (images only), or PNG files and ``scalars.csv`` in a fresh folder without any.

    Args:
        loggers: ``trainer.loggers``; read on global rank 0 only (a logger's ``experiment`` is real there).
        namespace: the Lightning namespace's logger classes.
        default_root_dir: ``trainer.default_root_dir``, for a run without loggers.
        tag_prefix: the callback's tag prefix (the first folder of the PNG files), for the notes.
    """
    found = Destinations()
    for logger in loggers:
        name = type(logger).__name__
        if _is(logger, namespace.mlflow_logger):
            found.sinks.append(ImagesOnly(MlflowSink(logger.experiment, logger.run_id)))
        elif _is(logger, namespace.wandb_logger):
            found.sinks.append(ImagesOnly(WandbSink(logger)))
        elif _is(logger, namespace.tensorboard_logger):
            found.sinks.append(ImagesOnly(TensorBoardSink(logger.experiment)))
            found.folders.append(Path(logger.log_dir))
        else:
            folder = _own_folder(logger) if not _is(logger, namespace.csv_logger) else Path(logger.log_dir)
            if folder is None:
                folder = fresh_run_folder(default_root_dir)
            found.sinks.append(ImagesOnly(PngSink(folder)))
            found.folders.append(folder)
            note = f"{name} takes no images: writing them as PNG files under {folder / tag_prefix}"
            found.notes.append(note)
    if not loggers:
        folder = fresh_run_folder(default_root_dir)
        found.sinks.append(PngSink(folder))
        found.folders.append(folder)
        found.notes.append(
            f"no logger: writing the images as PNG files under {folder / tag_prefix} and the numbers to "
            f"{folder / PngSink.SCALARS_FILE}"
        )
    found.folders = list(dict.fromkeys(found.folders))
    return found
