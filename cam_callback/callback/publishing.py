"""What one validation (or the end of a fit) publishes: tags, images and captions, as records.

Pure functions: maps and the fixed batch in, :class:`~cam_callback.sinks.ImageRecord` and
:class:`~cam_callback.sinks.ScalarRecord` out. Nothing here writes; the callback hands the records to its
sinks (:func:`cam_callback.sinks.publish`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

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
from ..render.captions import name_room, shorten
from ..render.enlarge import display_factor, enlarge_images
from ..sinks import ImageRecord, Record, ScalarRecord

__all__ = ["SUMMARY_TILE_SIDE", "Display", "captions", "summary_records", "validation_records"]

MapKey = tuple[str, str]  # (layer, method)

SUMMARY_TILE_SIDE = 64
"""The longer side, in pixels, of each tile of the end-of-fit summary."""


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
        """The tag ``<prefix><kind>/<layer>/<method>``.

        For example ``cam_heatmap/layer4/gradcam`` for ``kind="_heatmap"``.
        """
        return f"{self.tag_prefix}{kind}/{key[0]}/{key[1]}"


def _named(index: Any, names: Sequence[str] | None, limit: int) -> str:
    if names is not None and isinstance(index, int) and 0 <= index < len(names):
        return shorten(str(names[index]), limit)
    return _label_text(index)


def captions(
    result: CAMResult, labels: Tensor | None, names: Sequence[str] | None = None, width: int = 0
) -> list[str] | None:
    """One caption per sample, ``y=<label> p=<predicted> <probability of the target>``.

    Only for ``[B, classes]`` outputs (None for any other output). With ``names`` (class ``k`` is
    ``names[k]``), labels and predictions are named (``y=circle p=square 0.88``), each name shortened to fit
    a ``width``-pixel tile (:func:`~cam_callback.render.captions.name_room`); indices without a name stay
    numbers, and float labels are written to 3 significant digits (``y=0.123``).
    """
    outputs = result.outputs
    if not isinstance(outputs, Tensor) or outputs.dim() != 2:
        return None
    probs = outputs.float().softmax(dim=1)
    predicted = probs.argmax(dim=1)
    classes = result.classes if result.classes is not None else predicted
    target_prob = probs.gather(1, classes.unsqueeze(1)).squeeze(1)
    predicted_list = predicted.cpu().tolist()
    probs_list = target_prob.cpu().tolist()
    label_list = labels.cpu().tolist() if labels is not None else [None] * len(probs_list)
    limit = name_room(width, fixed=10) if width else 1 << 30
    return [
        (f"y={_named(y, names, limit)} " if y is not None else "") + f"p={_named(p, names, limit)} {q:.2f}"
        for y, p, q in zip(label_list, predicted_list, probs_list, strict=True)
    ]


def _label_text(label: int | float) -> str:
    """A class index as it is; a float label (a regression target) to 3 significant digits."""
    return f"{label:.3g}" if isinstance(label, float) else str(label)


def validation_records(
    result: CAMResult,
    maps: Mapping[MapKey, Tensor],
    scalars: Mapping[MapKey, Mapping[str, float]],
    inputs: Tensor,
    labels: Tensor | None,
    step: int,
    display: Display,
    names: Sequence[str] | None = None,
    *,
    texts: Sequence[str] | None = None,
    boxes: Sequence[Tensor | None] | None = None,
) -> list[Record]:
    """The images and drift numbers of one validation, pair by pair.

    Per (layer, method): the captioned overlay grid (``<prefix>/...``, in ``display.image_format``), the
    heatmap grid (``<prefix>_heatmap/...``, PNG) when asked, the saliency grid of the guided methods
    (``<prefix>_saliency/...``), then the drift numbers (``<prefix>_drift/.../<name>``).

    Args:
        result: the engine's result for the fixed batch.
        maps: normalised ``[B, H, W]`` maps by (layer, method).
        scalars: drift numbers by (layer, method), as :meth:`MapHistory.record` returned them.
        inputs: the fixed batch's inputs ``[B, C, H, W]``, as the network saw them.
        labels: the fixed batch's labels, or None.
        step: the global step they are logged at.
        display: how to draw and tag them.
        names: class names for the captions (class ``k`` is ``names[k]``), or None for indices.
        texts: the captions, when not the classifier's (:func:`captions`).
        boxes: ``[B, 4]`` box sets to outline on the overlays (ground truth in green, then the explained
            detections in yellow), or None.
    """
    count, height, width = int(inputs.shape[0]), int(inputs.shape[-2]), int(inputs.shape[-1])
    factor = display_factor(height, width, display.min_tile, count)
    big = enlarge_images(inputs, factor)  # display only: maps and numbers are already computed
    texts = texts if texts is not None else captions(result, labels, names, int(big.shape[-1]))
    boxes = [b * factor if b is not None else None for b in boxes] if boxes is not None else None
    records: list[Record] = []
    shown = to_display(big, display.mean, display.std)  # once for every pair
    size = (int(big.shape[-2]), int(big.shape[-1]))
    for key, normalized in maps.items():
        shown_maps = upsample_maps(normalized.float(), size)
        heat = colorize(shown_maps, display.colormap)  # once for both grids
        overlay = overlay_grid(
            big, shown_maps, alpha=display.alpha, colormap=display.colormap, mean=display.mean,
            std=display.std, captions=texts, boxes=boxes, shown=shown, heat=heat,
        )
        records.append(ImageRecord(display.tag("", key), overlay, step, display.image_format))
        if display.log_heatmaps:
            heatmaps = heatmap_grid(shown_maps, colormap=display.colormap, heat=heat)
            records.append(ImageRecord(display.tag("_heatmap", key), heatmaps, step, "png"))
        if key in result.saliency:
            saliency = enlarge_images(saliency_to_image(result.saliency[key]), factor)
            grid = image_grid(saliency, captions=texts)
            records.append(ImageRecord(display.tag("_saliency", key), grid, step, display.image_format))
        for name, value in scalars.get(key, {}).items():
            records.append(ScalarRecord(f"{display.tag('_drift', key)}/{name}", value, step))
    return records


def summary_records(
    frames: Mapping[MapKey, Tensor],
    steps: Mapping[MapKey, Sequence[int]],
    images: Tensor | None,
    step: int,
    display: Display,
    tile_side: int = SUMMARY_TILE_SIDE,
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
    """
    records = []
    for key, stack in frames.items():
        column_captions = ([""] if images is not None else []) + [f"step {s}" for s in steps[key]]
        grid = history_grid(
            stack, colormap=display.colormap, images=images, mean=display.mean, std=display.std,
            column_captions=column_captions, tile_side=tile_side,
        )
        records.append(ImageRecord(display.tag("_summary", key), grid, step, "png"))
    return records
