"""What the training thread hands to the background writer: one host copy of what a validation's images need.

The training thread computes the maps and nothing more. :func:`hand_over` starts one copy of the normalised
maps, the model's outputs (for the captions) and the saliency images to the host (non-blocking into pinned
memory on a CUDA device, where the copies overlap what the training thread does next) and returns a
:class:`Drawing`; :func:`draw_records` then runs in the background writer: it waits for the copies, writes
the captions and draws the grids. The writer's job holds CPU tensors only, never the model or a tensor on
the device.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from ..capture.engine import CAMResult
from ..sinks import ImageRecord
from .captions import captions_for
from .publishing import Display, MapKey, validation_records
from .samples import FixedBatch
from .tasks import explained_boxes

__all__ = ["Drawing", "draw_records", "hand_over", "to_host"]


def to_host(value: Any, pinned: bool = False) -> Any:
    """``value`` with every tensor copied to the CPU (in tensors, lists, tuples and dicts; else None).

    With ``pinned`` (a CUDA source), each copy goes into page-locked memory without waiting for the device:
    read the copies only after the device has passed them (:attr:`Drawing.ready`). Anything that is neither
    a tensor nor one of those containers becomes None: the captions read tensors and detections only.
    """
    if isinstance(value, Tensor):
        value = value.detach()
        if value.device.type == "cpu":
            return value
        if pinned:
            host = torch.empty(value.shape, dtype=value.dtype, pin_memory=True)
            return host.copy_(value, non_blocking=True)
        return value.to("cpu")
    if isinstance(value, Mapping):
        return {key: to_host(item, pinned) for key, item in value.items()}
    if isinstance(value, (list, tuple)) and not hasattr(value, "_fields"):
        return type(value)(to_host(item, pinned) for item in value)
    return None


@dataclass
class Drawing:
    """A validation's maps and samples on the host: what its images are drawn from.

    Attributes:
        result: the engine's result with its outputs, classes, scores and saliency on the CPU (no raw maps).
        maps: normalised ``[B, H, W]`` float32 maps by (layer, method), on the CPU.
        batch: the fixed batch on the CPU, as the network saw it before any precision cast.
        ready: a CUDA event the copies finish at (None when nothing was copied without waiting).
    """

    result: CAMResult
    maps: dict[MapKey, Tensor]
    batch: FixedBatch
    ready: torch.cuda.Event | None = None

    def wait(self) -> None:
        """Return once the copies have arrived."""
        if self.ready is not None:
            self.ready.synchronize()


def hand_over(result: CAMResult, maps: Mapping[MapKey, Tensor], batch: FixedBatch) -> Drawing:
    """Start copying ``result``'s outputs and saliency and ``maps`` to the host; ``batch`` is there already.

    On a CUDA device the copies go without waiting (pinned memory) and :attr:`Drawing.ready` marks their
    end on the current stream; elsewhere they are plain copies (a CPU tensor is passed on as it is: the
    engine's results are fresh tensors of each call).
    """
    cuda = any(m.device.type == "cuda" for m in maps.values())
    host = CAMResult(
        raw={},
        outputs=to_host(result.outputs, cuda),
        classes=to_host(result.classes, cuda),
        scores=to_host(result.scores, cuda),
        input_size=result.input_size,
        saliency=to_host(result.saliency, cuda),
    )
    copied = {key: to_host(m, cuda) for key, m in maps.items()}
    ready = None
    if cuda:
        ready = torch.cuda.Event()
        ready.record()
    return Drawing(host, copied, batch, ready)


def draw_records(
    drawing: Drawing,
    task: str,
    target: Any,
    names: Sequence[str] | None,
    step: int,
    display: Display,
) -> list[ImageRecord]:
    """The validation's images (:func:`~.publishing.validation_records`), drawn from ``drawing`` on the host.

    Args:
        drawing: what :func:`hand_over` returned.
        task: the fixed batch's task (:data:`~cam_callback.callback.tasks.TASKS`).
        target: the target the maps were computed for (the captions name it).
        names: class names for the captions, or None.
        step: the global step the images are logged at.
        display: how to draw and tag them.
    """
    drawing.wait()
    result, batch = drawing.result, drawing.batch

    def texts(width: int) -> list[str] | None:
        return captions_for(task, result, batch.labels, target, names, width)

    boxes = [batch.masks, explained_boxes(result.outputs, target)] if task == "detection" else None
    return validation_records(result, drawing.maps, batch.inputs, step, display, texts=texts, boxes=boxes)
