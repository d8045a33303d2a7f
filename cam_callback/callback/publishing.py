"""What one validation (or the end of a fit) shows: tags and captioned images, as records.

Pure functions: maps and the fixed batch in, :class:`~cam_callback.sinks.ImageRecord` items out. Nothing
here writes: the callback's output (:mod:`~cam_callback.callback.loggers`) hands the records to its sinks
(:func:`cam_callback.sinks.publish`) in the background writer. The numbers go another way, as Lightning
metrics (:mod:`~cam_callback.callback.metrics`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from torch import Tensor

from ..capture.engine import CAMResult
from ..core.maps import upsample_maps
from ..render import (
    colorize,
    heatmap_grid,
    history_grid,
    image_grid,
    overlay_grid,
    saliency_to_image,
    to_display,
)
from ..render.enlarge import display_factor, enlarge_images
from ..sinks import ImageRecord

__all__ = [
    "SUMMARY_TILE_SIDE", "Display", "frame_caption", "name_part", "summary_records", "validation_records",
]

MapKey = tuple[str, str]  # (layer, method)

TAG_KINDS = ("", "_heatmap", "_saliency", "_summary", "_drift")
"""What follows the tag prefix: overlays, heatmaps, saliencies, the summary, the drift numbers."""

SUMMARY_TILE_SIDE = 64
"""The longer side, in pixels, of each tile of the end-of-fit summary."""

_NAME_PARTS = {"+": "p"}
"""Characters of a method's name that some logger refuses or drops in a name, and what stands for them."""


def name_part(method: str) -> str:
    """The part of tags and metric names that stands for ``method``: its name, each ``+`` written ``p``.

    Every logger takes the result unchanged (letters, digits, ``-``): ``gradcam++`` is ``gradcampp``, so
    MLflow, which refuses ``+``, keeps it apart from ``gradcam``. The other method names are their own.
    """
    return "".join(_NAME_PARTS.get(char, char) for char in method)


@dataclass(frozen=True)
class Display:
    """How the maps are drawn and tagged (the callback's display options, already validated)."""

    tag_prefix: str = "cam"
    alpha: float = 0.5
    colormap: str = "jet"
    mean: Sequence[float] | None = None
    std: Sequence[float] | None = None
    image_format: str = "jpeg"
    log_heatmaps: bool = True
    min_tile: int = 0  # tiles with a shorter side are shown enlarged by a whole factor (display only)

    def tag(self, kind: str, key: MapKey) -> str:
        """The tag ``<prefix><kind>/<layer>/<method>``, the method as :func:`name_part` writes it.

        For example ``cam_heatmap/layer4/gradcam`` for ``kind="_heatmap"``, ``cam/layer4/gradcampp`` for
        ``gradcam++``'s overlays.
        """
        return f"{self.tag_prefix}{kind}/{key[0]}/{name_part(key[1])}"

    def number(self, key: MapKey, name: str, family: str = "drift") -> str:
        """The metric name ``<prefix>_<family>/<layer>/<method>/<name>`` of one of the pair's numbers."""
        return f"{self.tag(f'_{family}', key)}/{name}"

    def number_parts(self, metric: str) -> tuple[str, MapKey, str] | None:
        """``(family, (layer, method), name)`` of a metric name made by :meth:`number`, else None."""
        start = f"{self.tag_prefix}_"
        if not metric.startswith(start):
            return None
        family, _, rest = metric[len(start):].partition("/")
        parts = rest.rsplit("/", 2)  # a layer path has dots, not slashes; kept whole if it had some
        if not family or len(parts) != 3 or not all(parts):
            return None
        layer, method, name = parts
        return family, (layer, method), name


    def namespaces(self, key: MapKey) -> list[str]:
        """Every tag the pair's images and numbers are written under (the numbers below ``_drift``)."""
        return [self.tag(kind, key) for kind in TAG_KINDS]


def frame_caption(step: int, epoch: int) -> str:
    """A summary column's caption: ``"ep 3 step 62"``, or ``"step 0"`` for a frame made before training."""
    return f"ep {epoch} step {step}" if epoch >= 0 else f"step {step}"


def validation_records(
    result: CAMResult,
    maps: Mapping[MapKey, Tensor],
    inputs: Tensor,
    step: int,
    display: Display,
    *,
    texts: Callable[[int], Sequence[str] | None] | None = None,
    boxes: Sequence[Tensor | None] | None = None,
) -> list[ImageRecord]:
    """The images of one validation, pair by pair.

    Per (layer, method): the captioned overlay grid (``<prefix>/...``, in ``display.image_format``), the
    heatmap grid (``<prefix>_heatmap/...``, PNG) when asked, and the saliency grid of the guided methods
    (``<prefix>_saliency/...``).

    Args:
        result: the engine's result for the fixed batch.
        maps: normalised ``[B, H, W]`` maps by (layer, method).
        inputs: the fixed batch's inputs ``[B, C, H, W]``, as the network saw them.
        step: the global step they are logged at.
        display: how to draw and tag them.
        texts: the captions for tiles of a given width in pixels
            (:func:`~cam_callback.callback.captions.captions_for`), or None for none.
        boxes: ``[B, 4]`` box sets to outline on the overlays (ground truth in green, then the explained
            detections in yellow), or None.
    """
    count, height, width = int(inputs.shape[0]), int(inputs.shape[-2]), int(inputs.shape[-1])
    factor = display_factor(height, width, display.min_tile, count)
    big = enlarge_images(inputs, factor)  # display only: maps and numbers are already computed
    captions = texts(int(big.shape[-1])) if texts is not None else None
    boxes = [b * factor if b is not None else None for b in boxes] if boxes is not None else None
    records: list[ImageRecord] = []
    shown = to_display(big, display.mean, display.std)  # once for every pair
    size = (int(big.shape[-2]), int(big.shape[-1]))
    for key, normalized in maps.items():
        shown_maps = upsample_maps(normalized.float(), size)
        heat = colorize(shown_maps, display.colormap)  # once for both grids
        overlay = overlay_grid(
            big, shown_maps, alpha=display.alpha, colormap=display.colormap, mean=display.mean,
            std=display.std, captions=captions, boxes=boxes, shown=shown, heat=heat,
        )
        records.append(ImageRecord(display.tag("", key), overlay, step, display.image_format))
        if display.log_heatmaps:
            heatmaps = heatmap_grid(shown_maps, colormap=display.colormap, heat=heat)
            records.append(ImageRecord(display.tag("_heatmap", key), heatmaps, step, "png"))
        if key in result.saliency:
            saliency = enlarge_images(saliency_to_image(result.saliency[key]), factor)
            grid = image_grid(saliency, captions=captions)
            records.append(ImageRecord(display.tag("_saliency", key), grid, step, display.image_format))
    return records


def summary_records(
    frames: Mapping[MapKey, Tensor],
    steps: Mapping[MapKey, Sequence[int]],
    images: Tensor | None,
    step: int,
    display: Display,
    tile_side: int = SUMMARY_TILE_SIDE,
    epochs: Mapping[MapKey, Sequence[int]] | None = None,
) -> list[ImageRecord]:
    """The end-of-fit summary of each (layer, method): samples as rows, validations as columns.

    Bounded: the columns are the history's frames (at most
    :data:`~cam_callback.callback.history.MAX_FRAMES`, plus the images), each tile ``tile_side`` pixels
    on its longer side whatever the input's size.

    Args:
        frames: ``[T, B, h, w]`` stored maps by (layer, method), oldest first.
        steps: the global step of each frame, by (layer, method).
        images: the fixed batch's inputs ``[B, C, H, W]`` on the frames' device (a first column), or None.
        step: the global step the summary is logged at.
        display: how to draw and tag them.
        tile_side: the tiles' longer side in pixels.
        epochs: the epoch of each frame, by (layer, method) (-1: made before training), captioned beside
            its step (:func:`frame_caption`); None: steps alone.
    """
    records = []
    for key, stack in frames.items():
        frame_epochs = epochs[key] if epochs is not None else [-1] * len(steps[key])
        captions = [frame_caption(s, e) for s, e in zip(steps[key], frame_epochs, strict=True)]
        column_captions = ([""] if images is not None else []) + captions
        grid = history_grid(
            stack, colormap=display.colormap, images=images, mean=display.mean, std=display.std,
            column_captions=column_captions, tile_side=tile_side,
        )
        records.append(ImageRecord(display.tag("_summary", key), grid, step, "png"))
    return records
