"""Turn a ``target`` argument into one pre-softmax score per sample."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import Tensor

__all__ = ["Target", "select_scores"]

Target = str | int | Sequence[int] | Tensor | Callable[[Any], Tensor]


def _classes(target: Target, outputs: Tensor) -> Tensor:
    batch, num_classes = outputs.shape
    if isinstance(target, str):
        if target != "predicted":
            raise ValueError(
                f"`target`: unknown {target!r}; "
                "use 'predicted', a class index, per-sample classes or a callable"
            )
        return outputs.detach().argmax(dim=1)
    if isinstance(target, bool):
        raise TypeError("`target` must not be a bool")
    if isinstance(target, int):
        classes = torch.full((batch,), target, dtype=torch.long, device=outputs.device)
    elif isinstance(target, (Tensor, Sequence)):
        classes = torch.as_tensor(target, device=outputs.device)
        if classes.is_floating_point() or classes.is_complex() or classes.dtype == torch.bool:
            raise TypeError(f"`target` classes must be integers, got dtype {classes.dtype}")
        classes = classes.long().reshape(-1)
        if classes.is_inference():
            classes = classes.clone()  # an index saved for backward must be a normal tensor
        if classes.numel() != batch:
            raise ValueError(f"`target`: {classes.numel()} classes given for a batch of {batch}")
    else:
        raise TypeError(
            "`target` must be 'predicted', an int, a sequence or 1-D tensor of ints, or a callable; "
            f"got {type(target).__name__}"
        )
    bad = (classes < 0) | (classes >= num_classes)
    if bool(bad.any()):
        raise ValueError(
            f"`target`: class {int(classes[bad][0])} is out of range for {num_classes} classes "
            f"(valid: 0..{num_classes - 1})"
        )
    return classes


def select_scores(outputs: Any, target: Target) -> tuple[Tensor, Tensor | None]:
    """Return ``(scores[B], classes[B] or None)`` for ``target`` applied to the model's ``outputs``.

    ``outputs`` must be a ``[B, classes]`` tensor of pre-softmax scores unless ``target`` is a callable
    ``outputs -> scores[B]``, in which case ``classes`` is None.
    """
    if callable(target) and not isinstance(target, (Tensor, str)):
        scores = target(outputs)
        if not isinstance(scores, Tensor) or scores.dim() != 1:
            shape = tuple(scores.shape) if isinstance(scores, Tensor) else type(scores).__name__
            raise ValueError(f"`target` callable must return one score per sample, shape [B]; got {shape}")
        return scores, None
    if not isinstance(outputs, Tensor) or outputs.dim() != 2:
        got = tuple(outputs.shape) if isinstance(outputs, Tensor) else type(outputs).__name__
        raise ValueError(
            f"the model's output is {got}, not [B, classes] logits; pass `target` as a target object "
            "(cam_callback.targets: SegmentationTarget for [B, C, H, W] or {'out': ...} outputs, "
            "DetectionTarget for a detector's list of dicts, RegressionTarget for [B]) or a callable "
            "outputs -> scores[B]"
        )
    classes = _classes(target, outputs)
    return outputs.gather(1, classes.unsqueeze(1)).squeeze(1), classes
