"""What the fixed batch asks: the task it comes from, the labels it needs, and the default target for it.

The task is read from the batch before the model runs: torchvision's detection collate is detection;
floating-point labels ``[B]`` or ``[B, 1]`` are regression; 0/1 labels ``[B, C]`` (C > 1) are multi-label;
integer labels ``[B]`` are classification; no labels at all is ``"unlabelled"``.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from ..core.errors import CAMConfigurationError
from ..core.targets import DetectionTarget, MultiLabelTarget, RegressionTarget, ScoreTarget
from .samples import DetectionBatch, FixedBatch

__all__ = ["TASKS", "check_labels", "default_target", "explained_boxes", "task_of"]

TASKS = ("classification", "regression", "multilabel", "detection", "unlabelled")


def task_of(batch: FixedBatch) -> str:
    """One of :data:`TASKS`, read from the batch's type and labels."""
    if isinstance(batch, DetectionBatch):
        return "detection"
    labels = batch.labels
    if labels is None:
        return "unlabelled"
    if labels.dim() == 2 and labels.shape[1] > 1:
        values = labels.detach()
        if bool(((values == 0) | (values == 1)).all()):
            return "multilabel"
        return "regression" if values.is_floating_point() else "classification"
    if labels.is_floating_point():
        return "regression"
    return "classification"


def check_labels(target: Any, labels: Tensor | None) -> None:
    """Labels that ``target`` cannot use: an error when ``target="label"`` asks for them.

    Float labels with ``target=None`` are a task of their own (regression, multi-label), not an error.

    Raises:
        CAMConfigurationError: ``target="label"`` without labels, or with float labels.
    """
    if target == "label" and labels is None:
        raise CAMConfigurationError(
            "`target='label'` but the batches carry no labels; set `label_key` to where they are, or use "
            "target='predicted'"
        )
    if target == "label" and labels is not None and labels.dim() == 1 and labels.is_floating_point():
        raise CAMConfigurationError(
            f"`target='label'` explains each sample's true class, but the labels are "
            f"{str(labels.dtype).removeprefix('torch.')} numbers, not class indices (regression "
            "targets?); leave `target` unset (for regression: the output itself), or use "
            "target='predicted' or a class index"
        )


def default_target(task: str, target: Any, batch: FixedBatch) -> Any:
    """What the engine explains on this task's batch for the callback's ``target``.

    ``target`` is None, ``"label"``, ``"predicted"``, an int, a target object or a callable.
    """
    if isinstance(target, ScoreTarget):
        return target.bind(batch.labels, batch.masks) if target.uses_batch else target
    if callable(target) or isinstance(target, int):
        return target
    if task == "regression":
        return RegressionTarget()
    if task == "detection":
        has_boxes = batch.masks is not None and bool((batch.masks[:, 2:] > batch.masks[:, :2]).all(1).any())
        if target == "predicted" or not has_boxes:
            return DetectionTarget()
        return DetectionTarget(match="box").bind(batch.labels, batch.masks)
    if target == "predicted" or batch.labels is None:
        return "predicted"
    if task == "multilabel":
        return MultiLabelTarget().bind(batch.labels)
    return batch.labels


def explained_boxes(outputs: Any, target: Any) -> Tensor | None:
    """The box each sample's map explains ``[B, 4]`` (empty where none), for a detection target."""
    if not isinstance(target, DetectionTarget):
        return None
    picks = target.chosen(outputs)
    rows = [
        o["boxes"][p].detach().float() if p is not None else None for o, p in zip(outputs, picks, strict=True)
    ]
    device = next((r.device for r in rows if r is not None), torch.device("cpu"))
    return torch.stack([r if r is not None else torch.zeros(4, device=device) for r in rows])
