"""The forwards of the faithfulness numbers (:mod:`cam_callback.core.faithfulness`), run invisibly.

Every forward runs like the maps' own: in eval mode under :func:`~cam_callback.capture.hooks.explaining`
(train/eval flags and the global RNG restored, no gradients, no ``.grad``), on the model's device,
``chunk_size`` images at a time. Per (layer, method) and batch of ``B`` images:

* deletion, insertion: ``ceil((steps + 1) B / chunk_size)`` forwards each;
* average drop and increase in confidence (together): ``ceil(B / chunk_size)``;
* plus ``ceil(B / chunk_size)`` once for the batch's own probabilities (average drop's reference).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import torch
from torch import Tensor, nn

from ..core.faithfulness import (
    DEFAULT_STEPS,
    average_drop,
    blurred,
    curve_area,
    increase_in_confidence,
    top_pixels,
)
from .hooks import explaining

__all__ = ["faithfulness_numbers", "forward_count"]

MapKey = tuple[str, str]


def forward_count(names: Iterable[str], images: int, chunk_size: int, steps: int = DEFAULT_STEPS) -> int:
    """The extra forwards one (layer, method) costs for ``names`` (the batch's own probabilities excluded)."""
    names = set(names)
    curve = -(-(steps + 1) * images // chunk_size)
    single = -(-images // chunk_size)
    masked = single if names & {"average_drop", "increase_in_confidence"} else 0
    return curve * len(names & {"deletion", "insertion"}) + masked


def _probabilities(model: nn.Module, inputs: Tensor, classes: Tensor, chunk_size: int) -> Tensor:
    """The softmax probability of each row's class, ``chunk_size`` rows per forward, float32 ``[N]``."""
    parts = []
    for start in range(0, len(inputs), chunk_size):
        logits = model(inputs[start : start + chunk_size]).float()
        rows = classes[start : start + chunk_size].to(logits.device)
        parts.append(logits.softmax(dim=1).gather(1, rows.view(-1, 1)).squeeze(1))
    return torch.cat(parts)


def _curve(
    model: nn.Module,
    inputs: Tensor,
    masks: Tensor,
    baseline: Tensor,
    classes: Tensor,
    chunk_size: int,
    *,
    insert: bool,
) -> Tensor:
    """Probabilities ``[steps + 1, B]`` as the masked pixels go (or come), the copies made chunk by chunk."""
    points, b = masks.shape[0], inputs.shape[0]
    scores = []
    for start in range(0, points * b, chunk_size):
        index = torch.arange(start, min(start + chunk_size, points * b), device=inputs.device)
        step, sample = index // b, index % b
        mask = masks[step, sample].unsqueeze(1) > 0
        shown, hidden = (inputs, baseline) if insert else (baseline, inputs)
        copies = torch.where(mask, shown[sample], hidden[sample])  # one pass over the copies
        logits = model(copies).float()
        scores.append(
            logits.softmax(dim=1).gather(1, classes[sample].view(-1, 1).to(logits.device)).squeeze(1)
        )
    return torch.cat(scores).view(points, b)


def faithfulness_numbers(
    model: nn.Module,
    inputs: Tensor,
    maps: Mapping[MapKey, Tensor],
    classes: Tensor,
    names: Iterable[str],
    *,
    chunk_size: int = 64,
    steps: int = DEFAULT_STEPS,
) -> dict[MapKey, dict[str, float]]:
    """The faithfulness numbers of each (layer, method)'s maps, averaged over the batch.

    Args:
        model: a classifier whose output is logits ``[B, classes]``.
        inputs: ``[B, C, H, W]`` as the network sees them, on its device.
        maps: ``[B, H, W]`` maps in [0, 1] at the input's size, by (layer, method).
        classes: the target class of each sample ``[B]``.
        names: which of :data:`~cam_callback.core.faithfulness.FAITHFULNESS_NAMES` to compute.
        chunk_size: images per forward.
        steps: equal fractions of the pixels per deletion or insertion curve.
    """
    names = set(names)
    out: dict[MapKey, dict[str, float]] = {}
    with explaining(model):
        if inputs.is_inference():
            inputs = inputs.clone()
        classes = classes.to(inputs.device)
        full = _probabilities(model, inputs, classes, chunk_size)
        blur = blurred(inputs) if "insertion" in names else None
        for key, pair in maps.items():
            pair = pair.to(inputs.device)
            numbers: dict[str, float] = {}
            if names & {"deletion", "insertion"}:
                masks = top_pixels(pair, steps)
                if "deletion" in names:
                    zeros = torch.zeros_like(inputs)
                    curve = _curve(model, inputs, masks, zeros, classes, chunk_size, insert=False)
                    numbers["deletion"] = float(curve_area(curve).mean())
                if blur is not None:
                    curve = _curve(model, inputs, masks, blur, classes, chunk_size, insert=True)
                    numbers["insertion"] = float(curve_area(curve).mean())
            if names & {"average_drop", "increase_in_confidence"}:
                masked = _probabilities(
                    model, inputs * pair.unsqueeze(1).to(inputs.dtype), classes, chunk_size
                )
                if "average_drop" in names:
                    numbers["average_drop"] = float(average_drop(full, masked))
                if "increase_in_confidence" in names:
                    numbers["increase_in_confidence"] = float(increase_in_confidence(full, masked))
            out[key] = numbers
    return out
