"""The file sink: images as PNG files and scalars in a CSV, under one folder."""

from __future__ import annotations

import csv
import os
from pathlib import Path

from torch import Tensor

from ..core.checks import check_choice, check_str
from ..render.encoding import IMAGE_FORMATS, encode_png
from .base import check_step, check_tag

__all__ = ["PngSink"]


class PngSink:
    """Write images as PNG files and scalars to a CSV, under one folder.

    Layout, folders made when first needed:

    * image ``tag`` at ``step``: ``<directory>/<tag parts>/step_<step:08d>.png``, where the tag's ``/``
      separate folders (``"cam/overlay"`` at step 7 -> ``cam/overlay/step_00000007.png``); with
      ``one_file_per_tag``, ``<directory>/<tag parts joined by _>.png`` instead, rewritten at each step
      (``"cam_summary/layer4/gradcam"`` -> ``cam_summary_layer4_gradcam.png``);
    * scalars: appended to ``<directory>/scalars.csv`` with columns ``tag,step,value`` (header written once).

    Args:
        directory: the output folder.
        one_file_per_tag: keep only the latest image of each tag, in one flat file.
    """

    SCALARS_FILE = "scalars.csv"

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

    def add_scalar(self, tag: str, value: float, step: int) -> None:
        """Append a ``tag,step,value`` row to ``<directory>/scalars.csv``."""
        row = [check_str("tag", tag), check_step(step), repr(float(value))]
        path = self.directory / self.SCALARS_FILE
        self.directory.mkdir(parents=True, exist_ok=True)
        new = not path.exists() or path.stat().st_size == 0
        with path.open("a", newline="", encoding="utf-8") as handle:
            writer = csv.writer(handle)
            if new:
                writer.writerow(["tag", "step", "value"])
            writer.writerow(row)

    def flush(self) -> None:
        """Nothing to do: every call writes through to disk."""
