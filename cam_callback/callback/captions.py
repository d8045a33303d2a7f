"""One caption per explained sample, for every task: what the sample is and what the model made of it.

Classification ``y=<label> p=<predicted> <probability of the target>`` (class names when known); regression
``y=<label> p=<output>``; multi-label ``y=<positive labels> p=<labels above 0.5> <class>:<probability>``;
detection ``y=<class of the ground-truth box> p=<class of the explained box> <its score>``.
:func:`captions_for` picks the task's own.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from torch import Tensor

from ..capture.engine import CAMResult
from ..core.targets import DetectionTarget, MultiLabelTarget
from ..render.captions import name_room, shorten

__all__ = ["captions_for", "classifier_captions", "task_captions"]


def _named(index: Any, names: Sequence[str] | None, limit: int) -> str:
    if names is not None and isinstance(index, int) and 0 <= index < len(names):
        return shorten(str(names[index]), limit)
    return _label_text(index)


def classifier_captions(
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
        label, score = int(detections["labels"][pick]), float(detections["scores"][pick].detach())
        texts.append(f"{truth}p={label} {score:.2f}")
    return texts


def task_captions(task: str, result: CAMResult, labels: Tensor | None, target: Any) -> list[str] | None:
    """Captions for a task other than classification (None for classification, or an output they do not fit).

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


def captions_for(
    task: str,
    result: CAMResult,
    labels: Tensor | None,
    target: Any,
    names: Sequence[str] | None = None,
    width: int = 0,
) -> list[str] | None:
    """The captions of ``task``'s batch: the task's own, else the classifier's (None when neither fits).

    ``names`` and ``width`` (the tiles' width in pixels) name the classes of a classifier, shortened to fit.
    """
    own = task_captions(task, result, labels, target)
    return own if own is not None else classifier_captions(result, labels, names, width)
