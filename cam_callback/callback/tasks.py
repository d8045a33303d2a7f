"""What the fixed batch asks: the task it comes from, the default target for it, and the captions.

The task is read from the batch before the model runs: torchvision's detection collate is detection;
floating-point labels ``[B]`` or ``[B, 1]`` are regression; 0/1 labels ``[B, C]`` (C > 1) are multi-label;
integer labels ``[B]`` are classification; no labels at all is ``"unlabelled"``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import Tensor

from ..capture.engine import CAMResult
from ..core.task_targets import DetectionTarget, MultiLabelTarget, RegressionTarget, ScoreTarget
from .samples import FixedBatch

__all__ = ["TASKS", "default_target", "task_captions", "task_of"]

TASKS = ("classification", "regression", "multilabel", "detection", "unlabelled")


def task_of(batch: FixedBatch) -> str:
    """One of :data:`TASKS`, read from the batch's type and labels."""
    if getattr(batch, "task", None) == "detection":
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


def _number(value: float) -> str:
    return f"{value:.3g}"


def _regression(outputs: Tensor, labels: Tensor | None) -> list[str]:
    predicted = outputs.detach().float().reshape(len(outputs), -1)[:, 0].cpu().tolist()
    truth = labels.float().reshape(len(labels), -1)[:, 0].cpu().tolist() if labels is not None else None
    return [
        (f"y={_number(truth[i])} " if truth is not None else "") + f"p={_number(p)}"
        for i, p in enumerate(predicted)
    ]


def _joined(indices: Tensor) -> str:
    return ",".join(str(int(i)) for i in indices) or "-"


def _multilabel(outputs: Tensor, labels: Tensor | None, explained: Tensor) -> list[str]:
    probs = outputs.detach().float().sigmoid()
    texts = []
    for i in range(len(probs)):
        truth = f"y={_joined(labels[i].nonzero()[:, 0])} " if labels is not None else ""
        predicted = _joined((probs[i] > 0.5).nonzero()[:, 0])
        c = int(explained[i])
        texts.append(f"{truth}p={predicted} {c}:{float(probs[i, c]):.2f}")
    return texts


def _detection(outputs: Sequence[Any], labels: Tensor | None, picks: list[int | None]) -> list[str]:
    texts = []
    for i, (detections, pick) in enumerate(zip(outputs, picks, strict=True)):
        truth = f"y={int(labels[i])} " if labels is not None and int(labels[i]) >= 0 else ""
        if pick is None:
            texts.append(f"{truth}no box")
            continue
        label, score = int(detections["labels"][pick]), float(detections["scores"][pick])
        texts.append(f"{truth}p={label} {score:.2f}")
    return texts


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


def task_captions(task: str, result: CAMResult, labels: Tensor | None, target: Any) -> list[str] | None:
    """Captions for a task other than classification (None: the classifier's ``y= p= prob`` captions).

    Regression: ``y=<label> p=<output>`` as short numbers. Multi-label: ``y=<positive labels>
    p=<labels with sigmoid above 0.5> <explained class>:<its sigmoid probability>``. Detection:
    ``y=<class of the ground-truth box> p=<class of the explained box> <its score>``.
    """
    outputs = result.outputs
    explain: Callable[[Any], Tensor] | None = target if callable(target) else None
    if task == "regression" and isinstance(outputs, Tensor) and outputs.dim() in (1, 2):
        return _regression(outputs, labels)
    if task == "multilabel" and isinstance(outputs, Tensor) and outputs.dim() == 2:
        if isinstance(explain, MultiLabelTarget):
            explained = explain.classes(outputs)
        elif result.classes is not None:
            explained = result.classes
        else:
            return None
        return _multilabel(outputs, labels, explained)
    if task == "detection" and isinstance(explain, DetectionTarget):
        return _detection(outputs, labels, explain.chosen(outputs))
    return None
