"""Where one run's output goes: a sink per logger, the run folders, and the writer that takes it there.

Images go to every logger that takes them: TensorBoard (an event file of our own in its run folder), W&B
(``log_image``), MLflow (the client's ``log_image``, as run artifacts); CSV and any other logger get PNG
files under their own run folder. The numbers reach every logger through Lightning (:mod:`.metrics`), so
the sinks take images only; with no logger at all, images and a ``scalars.csv`` of the numbers go to a
fresh ``<default_root_dir>/cam_logs/version_<N>``. The end-of-fit summary also goes, as one PNG file per
(layer, method), into each run folder of our own. Nothing is written into a tracking store's own folders.
:class:`RunOutput` finds the destinations when first needed and runs every write in a background writer.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

from ..sinks import (
    BackgroundWriter,
    ChartGroup,
    ImageRecord,
    MlflowSink,
    PngSink,
    ScalarsCsv,
    Sink,
    TensorBoardSink,
    WandbSink,
)
from ..sinks import publish as publish_images
from .reporting import Reporter
from .trainer import LightningNamespace, TrainerLike

__all__ = ["Destinations", "RunOutput", "destinations", "fresh_run_folder"]

DEFAULT_FOLDER = "cam_logs"
"""With no logger, runs are written to ``<default_root_dir>/cam_logs/version_<N>``."""


@dataclass
class Destinations:
    """Where one run's records go.

    Attributes:
        sinks: every image goes to each.
        folders: the run folders of the run's own (TensorBoard, CSV, other loggers, no logger), where the
            summary PNG files are written too; W&B and MLflow keep theirs as logged images.
        numbers: the CSV file of the numbers when no logger takes them (no logger at all), else None.
        notes: what to tell the user once (where PNG files go).
    """

    sinks: list[Sink] = field(default_factory=list)
    folders: list[Path] = field(default_factory=list)
    numbers: ScalarsCsv | None = None
    notes: list[str] = field(default_factory=list)
    _summary_files: list[PngSink] | None = None

    @property
    def summary_sinks(self) -> list[Sink]:
        """Where the summary goes: every sink, and one PNG file per tag in each run folder of our own."""
        if self._summary_files is None:
            self._summary_files = [PngSink(folder, one_file_per_tag=True) for folder in self.folders]
        return [*self.sinks, *self._summary_files]

    def unwritten(self) -> list[tuple[str, int]]:
        """``(tag, step)`` of the records the sinks still keep after failed writes (none when all went)."""
        holders: list[Any] = [*self.sinks, *(self._summary_files or []), self.numbers]
        return [record for holder in holders for record in getattr(holder, "unwritten", list)()]


def _draw_and_publish(sinks: list[Sink], draw: Callable[[], Sequence[ImageRecord]]) -> Iterable[Exception]:
    """The writer's job for images drawn in the background: draw them, then write them to ``sinks``."""
    return publish_images(sinks, list(draw()))


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
    """One sink per logger, or PNG files and ``scalars.csv`` in a fresh folder without any.

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
            found.sinks.append(MlflowSink(logger.experiment, logger.run_id))
        elif _is(logger, namespace.wandb_logger):
            found.sinks.append(WandbSink(logger))
        elif _is(logger, namespace.tensorboard_logger):
            found.sinks.append(TensorBoardSink(logger.experiment))
            found.folders.append(Path(logger.log_dir))
        else:
            folder = _own_folder(logger) if not _is(logger, namespace.csv_logger) else Path(logger.log_dir)
            if folder is None:
                folder = fresh_run_folder(default_root_dir)
            found.sinks.append(PngSink(folder))
            found.folders.append(folder)
            note = f"{name} takes no images: writing them as PNG files under {folder / tag_prefix}"
            found.notes.append(note)
    if not loggers:
        folder = fresh_run_folder(default_root_dir)
        found.sinks.append(PngSink(folder))
        found.folders.append(folder)
        found.numbers = ScalarsCsv(folder / ScalarsCsv.FILE_NAME)
        found.notes.append(
            f"no logger: writing the images as PNG files under {folder / tag_prefix} and the numbers to "
            f"{found.numbers.path}"
        )
    found.folders = list(dict.fromkeys(found.folders))
    return found


def _write_layout(sinks: Sequence[TensorBoardSink], groups: Sequence[ChartGroup]) -> list[Exception]:
    """Hand the layout to every TensorBoard sink; return what failed (a background writer's job)."""
    errors: list[Exception] = []
    for sink in sinks:
        try:
            sink.add_layout(groups)
        except Exception as error:  # noqa: BLE001 - one failing sink must not stop the others
            errors.append(error)
    return errors


class RunOutput:
    """One run's destinations, found when first needed, and the background writer that writes to them.

    Every write (images, the numbers' CSV without a logger, the summary) is a job of one
    :class:`~cam_callback.sinks.BackgroundWriter`, run in order off the training thread. Call it on global
    rank 0 only (a logger's ``experiment`` is real there). Under ``fast_dev_run`` (whose loggers are a dummy)
    nothing is written.

    Args:
        namespace: the Lightning namespace's logger classes.
        tag_prefix: the callback's tag prefix, for the notes on where PNG files go.
        reporter: says the notes once, and the writer's failures.
        max_pending: validations whose output may wait for the writer; the next one waits for room.
    """

    def __init__(
        self, namespace: LightningNamespace, tag_prefix: str, reporter: Reporter, max_pending: int = 2
    ) -> None:
        self.namespace = namespace
        self.tag_prefix = tag_prefix
        self.reporter = reporter
        self.max_pending = max_pending
        self._found: Destinations | None = None
        self._writer: BackgroundWriter | None = None
        self._layout: dict[str, ChartGroup] = {}

    def destinations(self, trainer: TrainerLike) -> Destinations:
        """Where this run's output goes (found at the first call)."""
        if self._found is None:
            if getattr(trainer, "fast_dev_run", False):  # its loggers are a dummy that writes nothing
                note = "fast_dev_run: the maps are computed and checked, but no file is written"
                self.reporter.once("fast-dev-run", note)
                self._found = Destinations()
            else:
                root = str(trainer.default_root_dir)
                self._found = destinations(list(trainer.loggers), self.namespace, root, self.tag_prefix)
                for note in self._found.notes:
                    self.reporter.once(note, note)
        return self._found

    def images(
        self, trainer: TrainerLike, records: Sequence[ImageRecord] | Callable[[], Sequence[ImageRecord]]
    ) -> None:
        """Write a validation's images to every sink, in the background.

        ``records`` may be a function that draws them: the background writer calls it, then writes (a
        failure there is reported like a failed write).
        """
        sinks = self.destinations(trainer).sinks
        if callable(records):
            self._submit(partial(_draw_and_publish, sinks, records))
        else:
            self._submit(partial(publish_images, sinks, list(records)))

    def numbers(self, trainer: TrainerLike, numbers: Mapping[str, float], step: int) -> None:
        """Keep a validation's numbers in the run's CSV when no logger takes them (else nothing)."""
        target = self.destinations(trainer).numbers
        if target is not None and numbers:
            self._submit(partial(target.append, dict(numbers), step))

    def layout(self, trainer: TrainerLike, groups: Sequence[ChartGroup]) -> None:
        """Write the Custom Scalars layout to the TensorBoard sinks when ``groups`` add to it.

        Once per run when every family of numbers comes with the first validation that has numbers; again
        (the whole layout, which TensorBoard shows instead) only if a later one brings a new pair or family.
        """
        grown = dict(self._layout)
        for group in groups:
            known = grown.get(group.title)
            charts = dict(known.charts) if known is not None else {}
            charts.update({title: tags for title, tags in group.charts if title not in charts})
            grown[group.title] = ChartGroup(group.title, tuple(charts.items()))
        if grown == self._layout:
            return
        self._layout = grown
        sinks = [s for s in self.destinations(trainer).sinks if isinstance(s, TensorBoardSink)]
        if sinks:
            self._submit(partial(_write_layout, sinks, list(grown.values())))

    def summary(self, trainer: TrainerLike, records: Sequence[ImageRecord]) -> None:
        """Write the end-of-fit summary to every sink and, as PNG files, into the run folders of our own."""
        self._submit(partial(publish_images, self.destinations(trainer).summary_sinks, list(records)))

    def report(self) -> None:
        """Say (or, under ``strict``, raise) what the writer failed to write since the last report."""
        if self._writer is not None:
            self.reporter.writer_failures(self._writer.take_errors())

    def close(self, *, quiet: bool = False) -> None:
        """Write everything queued, stop the writer, then report its failures (``quiet``: only warn)."""
        writer, self._writer = self._writer, None
        if writer is not None:
            try:
                writer.close()
            finally:
                self.reporter.writer_failures(writer.take_errors(), quiet=quiet)
                if self._found is not None:
                    self.reporter.unwritten(self._found.unwritten())

    def _submit(self, job: Any) -> None:
        if self._writer is None:
            self._writer = BackgroundWriter(self.max_pending)
        self._writer.submit(job)
