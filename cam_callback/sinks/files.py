"""PNG files of the images under one folder, and a CSV of the numbers for a run that has no logger."""

from __future__ import annotations

import csv
import os
from collections.abc import Mapping
from pathlib import Path

from torch import Tensor

from ..core.checks import check_choice, check_str
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

    Args:
        directory: the output folder.
        one_file_per_tag: keep only the latest image of each tag, in one flat file.
    """

    def __init__(self, directory: str | os.PathLike[str], *, one_file_per_tag: bool = False) -> None:
        self.directory = Path(directory)
        self.one_file_per_tag = one_file_per_tag

    def image_path(self, tag: str, step: int) -> Path:
        """The file that :meth:`add_image` writes for ``tag`` at ``step``."""
        parts, step = check_tag(tag), check_step(step)
        if self.one_file_per_tag:
            return self.directory / f"{'_'.join(parts)}.png"
        return self.directory.joinpath(*parts, f"step_{step:08d}.png")

    def add_image(self, tag: str, image: Tensor, step: int, image_format: str = "png") -> None:
        """Write a ``uint8 [3, H, W]`` RGB image as a PNG at :meth:`image_path`.

        Files on disk are always lossless PNG; ``image_format`` is checked, then ignored.

        Raises:
            OSError: the PNG could not be encoded or written.
        """
        check_choice("image_format", image_format, IMAGE_FORMATS)
        path = self.image_path(tag, step)
        encoded = encode_png(image)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(encoded)

    def flush(self) -> None:
        """Nothing to do: every call writes through to disk."""


class ScalarsCsv:
    """The numbers of a run without a logger: rows ``tag,step,value`` appended to one CSV file.

    The header is written when the file is new or empty; a second writer on the same file appends.

    Args:
        path: the CSV file (its folder is made when first needed).
    """

    FILE_NAME = "scalars.csv"
    """The file's name in a run folder."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)

    def append(self, numbers: Mapping[str, float], step: int) -> list[Exception]:
        """Append one row per number at ``step``; return the failures (a job of the background writer)."""
        step = check_step(step)
        rows = [[check_str("tag", tag), step, repr(float(value))] for tag, value in numbers.items()]
        if not rows:
            return []
        self.path.parent.mkdir(parents=True, exist_ok=True)
        new = not self.path.exists() or self.path.stat().st_size == 0
        with self.path.open("a", newline="", encoding="utf-8") as handle:
            writer = csv.writer(handle)
            if new:
                writer.writerow(["tag", "step", "value"])
            writer.writerows(rows)
        return []
