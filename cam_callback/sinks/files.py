"""PNG files of the images under one folder, and a CSV of the numbers for a run that has no logger."""

from __future__ import annotations

import csv
import io
import os
from collections.abc import Mapping
from pathlib import Path

from torch import Tensor

from ..core.checks import check_choice, check_str
from .atomic import WriteFailure, out_of_space, replace_file
from .base import check_step, check_tag
from .encoding import IMAGE_FORMATS, encode_png

__all__ = ["PngSink", "ScalarsCsv"]


class PngSink:
    """Write images as PNG files under one folder.

    Layout, folders made when first needed: image ``tag`` at ``step`` goes to
    ``<directory>/<tag parts>/step_<step:08d>.png``, where the tag's ``/`` separate folders
    (``"cam/overlay"`` at step 7 -> ``cam/overlay/step_00000007.png``); with ``one_file_per_tag``, to
    ``<directory>/<tag parts joined by _>.png`` instead, rewritten at each step
    (``"cam_summary/layer4/gradcam"`` -> ``cam_summary_layer4_gradcam.png``).

    Each file is written to a temporary name and renamed (:func:`~cam_callback.sinks.atomic.replace_file`),
    so a full disk leaves no empty or cut PNG. An image that cannot be written waits for the next
    :meth:`flush` (the images of the latest failed validation only; older ones are dropped), which tries it
    again and raises a :class:`~cam_callback.sinks.atomic.WriteFailure` naming what was lost and kept.

    Args:
        directory: the output folder.
        one_file_per_tag: keep only the latest image of each tag, in one flat file.
    """

    def __init__(self, directory: str | os.PathLike[str], *, one_file_per_tag: bool = False) -> None:
        self.directory = Path(directory)
        self.one_file_per_tag = one_file_per_tag
        self._failed: list[tuple[str, int, Path, bytes]] = []  # since the last flush
        self._backlog: list[tuple[str, int, Path, bytes]] = []  # the last failed flush's, to try again
        self._error: OSError | None = None

    def image_path(self, tag: str, step: int) -> Path:
        """The file that :meth:`add_image` writes for ``tag`` at ``step``."""
        parts, step = check_tag(tag), check_step(step)
        if self.one_file_per_tag:
            return self.directory / f"{'_'.join(parts)}.png"
        return self.directory.joinpath(*parts, f"step_{step:08d}.png")

    def add_image(self, tag: str, image: Tensor, step: int, image_format: str = "png") -> None:
        """Write a ``uint8 [3, H, W]`` RGB image as a PNG at :meth:`image_path`.

        Files on disk are always lossless PNG; ``image_format`` is checked, then ignored. A write that
        fails for want of space is kept for :meth:`flush`, which reports it.

        Raises:
            OSError: the PNG could not be encoded or written (for another reason than a full disk).
        """
        check_choice("image_format", image_format, IMAGE_FORMATS)
        path = self.image_path(tag, step)
        encoded = encode_png(image)
        self._write((tag, step, path, encoded), self._failed)

    def flush(self) -> None:
        """Try the last failed flush's images again; report this flush's failures.

        Raises:
            WriteFailure: some image was not written: those of this flush wait for the next one, those
                kept from the last failed flush and failing again are dropped.
        """
        retried, self._backlog = self._backlog, []
        lost: list[tuple[str, int, Path, bytes]] = []
        for item in retried:
            self._write(item, lost)
        self._backlog, self._failed = self._failed, []
        error, self._error = self._error, None
        if error is not None:
            raise WriteFailure(
                str(self.directory), error, [item[:2] for item in lost], [item[:2] for item in self._backlog]
            )

    def unwritten(self) -> list[tuple[str, int]]:
        """``(tag, step)`` of the images kept from the last failed flush, to try again."""
        return [item[:2] for item in self._backlog]

    def _write(self, item: tuple[str, int, Path, bytes], failed: list[tuple[str, int, Path, bytes]]) -> None:
        try:
            replace_file(item[2], item[3])
        except OSError as error:
            if not out_of_space(error) and failed is self._failed:
                raise
            failed.append(item)
            self._error = error


class ScalarsCsv:
    """The numbers of a run without a logger: rows ``tag,step,value`` appended to one CSV file.

    The header is written when the file is new or empty; a second writer on the same file appends. Each
    append rewrites the file under a temporary name and renames it
    (:func:`~cam_callback.sinks.atomic.replace_file`), so a full disk never leaves a cut row; rows that
    could not be written are tried again with the next append (those of the latest failed append only).

    Args:
        path: the CSV file (its folder is made when first needed).
    """

    FILE_NAME = "scalars.csv"
    """The file's name in a run folder."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self._backlog: list[tuple[str, int, str]] = []

    def unwritten(self) -> list[tuple[str, int]]:
        """``(tag, step)`` of the rows kept from the last failed append, to try again."""
        return [row[:2] for row in self._backlog]

    def append(self, numbers: Mapping[str, float], step: int) -> list[Exception]:
        """Append one row per number at ``step``; return the failures (a job of the background writer)."""
        step = check_step(step)
        rows = [(check_str("tag", tag), step, repr(float(value))) for tag, value in numbers.items()]
        if not rows:
            return []
        kept, self._backlog = self._backlog, []
        text = io.StringIO(newline="")
        try:
            old = self.path.read_bytes() if self.path.exists() else b""
            writer = csv.writer(text)
            if not old:
                writer.writerow(["tag", "step", "value"])
            writer.writerows([*kept, *rows])
            replace_file(self.path, old + text.getvalue().encode("utf-8"))
        except OSError as error:
            if not out_of_space(error):
                self._backlog = kept
                raise
            self._backlog = rows
            lost = [row[:2] for row in kept]
            return [WriteFailure(str(self.path), error, lost, [row[:2] for row in rows])]
        return []
