"""Every target: what one explanation asks of the model's outputs, as one score per sample.

A target turns the model's outputs into one pre-activation score per sample, ``scores[B]``; the engine
back-propagates their sum. The accepted forms, checked by :func:`check_target` alone:

- the words of :data:`TARGET_WORDS`: ``"predicted"`` (each sample's argmax) and ``"label"`` (each sample's
  true class, which only a caller holding the labels can resolve: the callback does);
- a class index for every sample, or one class per sample (a sequence or a 1-D tensor of ints);
- a :class:`ScoreTarget` object (the task targets below, or your own subclass), built from YAML by
  LightningCLI (``class_path`` / ``init_args``); one that reads the explained batch's ground truth
  (labels, masks, boxes) gets it through :meth:`ScoreTarget.bind`, and a subset of it for perturbed copies
  through :meth:`ScoreTarget.take`;
- in Python, any callable ``outputs -> scores[B]``.

:func:`select_scores` applies a target to the outputs. The public door is :mod:`cam_callback.targets`.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch
from torch import Tensor

from .checks import check_bool, check_choice, check_float, check_int, check_str, closest

__all__ = [
    "TARGET_WORDS",
    "DetectionTarget",
    "FinerTarget",
    "MultiLabelTarget",
    "NoDetectionsError",
    "RegressionTarget",
    "ScoreTarget",
    "SegmentationTarget",
    "Target",
    "box_iou",
    "check_target",
    "finer_scores",
    "select_scores",
    "target_for_rows",
]

TARGET_WORDS = ("label", "predicted")
"""The targets named by a word: each sample's true class, or its predicted (argmax) class."""


class ScoreTarget:
    """Base of target objects: ``target(outputs) -> scores[B]``, one pre-activation score per sample.

    Subclasses define ``__call__``. Those that need the batch's ground truth set ``uses_batch = True`` and
    override :meth:`bind` and :meth:`take`.
    """

    uses_batch: bool = False
    """Whether :meth:`bind` must be called with the batch's labels and masks before scoring."""

    def __call__(self, outputs: Any) -> Tensor:
        """One score per sample ``[B]`` from the model's ``outputs``."""
        raise NotImplementedError(f"{type(self).__name__} must define __call__(outputs) -> scores[B]")

    def bind(self, labels: Tensor | None = None, masks: Tensor | None = None) -> ScoreTarget:
        """A copy of this target holding the batch's ``labels`` and ``masks`` (or boxes); self by default."""
        return self

    def take(self, samples: Tensor) -> ScoreTarget:
        """This target for a batch made of the given samples (indices ``[n]`` into the bound batch)."""
        return self

    def __repr__(self) -> str:
        public = {k: v for k, v in vars(self).items() if not k.startswith("_")}
        return f"{type(self).__name__}({', '.join(f'{k}={v!r}' for k, v in public.items())})"



Target = str | int | Sequence[int] | Tensor | ScoreTarget | Callable[[Any], Tensor]
"""Any accepted target (see the module); ``None`` where a caller has a default of its own."""


def check_target(target: Any) -> Any:
    """``target`` if it is an accepted form (see the module), else an error naming ``target``.

    Per-sample classes are checked against the batch and the classes when scored (:func:`select_scores`).

    Raises:
        TypeError: a bool, a float, or anything that is none of the forms.
        ValueError: an unknown word, or a negative class index.
    """
    if target is None or isinstance(target, ScoreTarget):
        return target
    if isinstance(target, str):
        if target not in TARGET_WORDS:
            near = closest(target, TARGET_WORDS)
            hint = f" (did you mean {near[0]!r}?)" if near else ""
            raise ValueError(
                f"`target`: unknown {target!r}{hint}; use {', '.join(map(repr, TARGET_WORDS))}, a class "
                "index, per-sample classes, a target object (cam_callback.targets) or a callable"
            )
        return target
    if isinstance(target, bool):
        raise TypeError("`target` must not be a bool")
    if isinstance(target, int):
        return check_int("target", target, minimum=0)
    if isinstance(target, (Tensor, Sequence)) or callable(target):
        return target
    raise TypeError(
        "`target` must be 'predicted', 'label', an int, a sequence or 1-D tensor of ints, a target object or "
        f"a callable; got {type(target).__name__}"
    )


def target_for_rows(target: Any, samples: Tensor) -> Any:
    """``target`` for a batch made of the rows ``samples`` of the bound batch (perturbed copies).

    A :class:`ScoreTarget` takes the rows of what it holds (:meth:`ScoreTarget.take`); any other callable
    scores each row of the output on its own, so it is returned as it is.
    """
    return target.take(samples) if isinstance(target, ScoreTarget) else target


def _classes(target: Target, outputs: Tensor) -> Tensor:
    batch, num_classes = outputs.shape
    if isinstance(target, str):
        if check_target(target) == "label":
            raise ValueError(
                "`target`: 'label' needs each sample's true class, which only the caller holds; pass the "
                "labels as per-sample classes (the callback does)"
            )
        return outputs.detach().argmax(dim=1)
    if isinstance(target, bool):
        raise TypeError("`target` must not be a bool")
    if isinstance(target, int):
        if not 0 <= target < num_classes:
            raise _out_of_range(target, num_classes)
        # Checked above, so the device is not waited for here.
        return torch.full((batch,), target, dtype=torch.long, device=outputs.device)
    if isinstance(target, (Tensor, Sequence)):
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
        raise _out_of_range(int(classes[bad][0]), num_classes)
    return classes


def _out_of_range(index: int, num_classes: int) -> ValueError:
    return ValueError(
        f"`target`: class {index} is out of range for {num_classes} classes (valid: 0..{num_classes - 1})"
    )


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


def _with(target: ScoreTarget, **fields: Any) -> Any:
    clone = copy.copy(target)
    for name, value in fields.items():
        setattr(clone, name, value)
    return clone


def _rows(value: Tensor | None, samples: Tensor) -> Tensor | None:
    return value[samples.to(value.device)] if value is not None else None


def _optional_class(name: str, value: int | None) -> int | None:
    return None if value is None else check_int(name, value, minimum=0)


class _BatchRows(ScoreTarget):
    """A target that, when ``uses_batch``, holds one tensor of the explained batch with a row per sample.

    :meth:`bind` keeps what :meth:`_from_batch` picks (labels, masks or boxes) in ``_held``; :meth:`take`
    keeps the rows of the given samples.
    """

    _held: Tensor | None = None

    def _from_batch(self, labels: Tensor | None, masks: Tensor | None) -> Tensor | None:
        raise NotImplementedError

    def bind(self, labels: Tensor | None = None, masks: Tensor | None = None) -> ScoreTarget:
        """A copy holding what this target reads of the batch (self when it reads nothing)."""
        return _with(self, _held=self._from_batch(labels, masks)) if self.uses_batch else self

    def take(self, samples: Tensor) -> ScoreTarget:
        """A copy holding the rows of ``samples`` only."""
        return _with(self, _held=_rows(self._held, samples)) if self.uses_batch else self


# ---------------------------------------------------------------------------------------------- segmentation


class SegmentationTarget(_BatchRows):
    """The logits of one class summed over a region of each sample's segmentation output.

    Outputs ``[B, C, H, W]`` or a dict holding them under ``output_key`` (torchvision's ``{"out": ...}``).
    ``score[b] = sum_ij logits[b, c, i, j] * region[b, i, j]``, the region held fixed (no gradient through
    it).

    Args:
        class_index: the class ``c``.
        region: ``"predicted"`` (the pixels whose argmax is ``c``), ``"mask"`` (each sample's ground-truth
            mask from the batch: for an integer mask of class ids the pixels equal to ``c``, a bool or float
            mask as it is; resized to the output's size, nearest) or ``"all"`` (every pixel).
        output_key: where a dict output holds the logits.
    """

    REGIONS = ("predicted", "mask", "all")

    def __init__(self, class_index: int, region: str = "predicted", output_key: str = "out") -> None:
        self.class_index = check_int("class_index", class_index, minimum=0)
        self.region = check_choice("region", region, self.REGIONS)
        self.output_key = check_str("output_key", output_key)
        self.uses_batch = self.region == "mask"

    def _from_batch(self, labels: Tensor | None, masks: Tensor | None) -> Tensor | None:
        return masks  # the batch's masks, for region="mask"

    def logits(self, outputs: Any) -> Tensor:
        """The ``[B, C, H, W]`` logits in ``outputs``."""
        if isinstance(outputs, Mapping):
            if self.output_key not in outputs:
                raise ValueError(
                    f"SegmentationTarget: `output_key` {self.output_key!r} is not in the output; "
                    f"keys: {', '.join(map(repr, outputs))}"
                )
            outputs = outputs[self.output_key]
        if not isinstance(outputs, Tensor) or outputs.dim() != 4:
            got = tuple(outputs.shape) if isinstance(outputs, Tensor) else type(outputs).__name__
            raise ValueError(f"SegmentationTarget: expected segmentation logits [B, C, H, W], got {got}")
        if not 0 <= self.class_index < outputs.shape[1]:
            raise ValueError(
                f"SegmentationTarget: class {self.class_index} is out of range for {outputs.shape[1]} "
                f"classes (valid: 0..{outputs.shape[1] - 1})"
            )
        return outputs

    def __call__(self, outputs: Any) -> Tensor:
        """``[B]`` summed logits of the class over the region."""
        logits = self.logits(outputs)
        scores = logits[:, self.class_index]
        if self.region == "all":
            return scores.sum(dim=(1, 2))
        if self.region == "predicted":
            region = (logits.detach().argmax(dim=1) == self.class_index).to(scores.dtype)
        else:
            region = self._region_from_masks(scores)
        return (scores * region).sum(dim=(1, 2))

    def _region_from_masks(self, scores: Tensor) -> Tensor:
        masks = self._held
        if masks is None:
            raise ValueError(
                "SegmentationTarget(region='mask') needs the batch's masks: the batches carry none "
                "(set the callback's `mask_key`), or call .bind(masks=...) in Python"
            )
        if masks.dim() == 4 and masks.shape[1] == 1:
            masks = masks[:, 0]
        if masks.dim() != 3 or masks.shape[0] != scores.shape[0]:
            raise ValueError(
                f"SegmentationTarget: masks {tuple(masks.shape)} do not fit outputs {tuple(scores.shape)}; "
                "expected [B, H, W]"
            )
        masks = masks.to(scores.device)
        if masks.dtype == torch.bool or masks.is_floating_point():
            region = masks.float()
        else:
            region = (masks == self.class_index).float()
        if region.shape[-2:] != scores.shape[-2:]:
            region = torch.nn.functional.interpolate(region[:, None], size=scores.shape[-2:], mode="nearest")[
                :, 0
            ]
        return region.to(scores.dtype)


# ---------------------------------------------------------------------------------------------- detection


def box_iou(boxes: Tensor, other: Tensor) -> Tensor:
    """Intersection over union ``[N, M]`` of every pair of boxes ``[N, 4]``, ``[M, 4]`` (x1, y1, x2, y2)."""
    top_left = torch.maximum(boxes[:, None, :2], other[None, :, :2])
    bottom_right = torch.minimum(boxes[:, None, 2:], other[None, :, 2:])
    inter = (bottom_right - top_left).clamp(min=0).prod(dim=2)
    area = (boxes[:, 2:] - boxes[:, :2]).clamp(min=0).prod(dim=1)
    area_other = (other[:, 2:] - other[:, :2]).clamp(min=0).prod(dim=1)
    union = area[:, None] + area_other[None, :] - inter
    return inter / union.clamp(min=torch.finfo(inter.dtype).tiny)


class NoDetectionsError(ValueError):
    """The detector returned no box that the target could score, for any sample."""


class DetectionTarget(_BatchRows):
    """The score of one detected box per sample, for torchvision's detection models.

    Outputs: a list of one dict per image with ``"boxes"`` ``[N, 4]``, ``"labels"`` ``[N]`` and ``"scores"``
    ``[N]`` (what torchvision's detectors return in eval mode). The score is differentiable through the box
    head, so the maps show what made the detector confident in that box.

    Args:
        class_index: only boxes of this label count (torchvision counts the background as 0, so objects
            start at 1); None for any label.
        match: ``"best"`` (the highest-scoring box) or ``"box"`` (the box that overlaps the sample's
            ground-truth box ``[B, 4]`` from the batch most; ties go to the higher score; boxes that do not
            overlap at all do not count).

    A sample without such a box scores 0 (its map is empty); when no sample has one,
    :class:`NoDetectionsError` says so (an untrained detector keeps no box above its
    ``box_score_thresh``).
    """

    MATCHES = ("best", "box")

    def __init__(self, class_index: int | None = None, match: str = "best") -> None:
        self.class_index = _optional_class("class_index", class_index)
        self.match = check_choice("match", match, self.MATCHES)
        self.uses_batch = self.match == "box"

    def _from_batch(self, labels: Tensor | None, masks: Tensor | None) -> Tensor | None:
        """The batch's ground-truth boxes ``[B, 4]`` (for ``match="box"``)."""
        if masks is None or masks.dim() != 2 or masks.shape[1] != 4:
            got = tuple(masks.shape) if masks is not None else None
            raise ValueError(
                f"DetectionTarget(match='box') needs one ground-truth box [B, 4] per sample, got {got}"
            )
        return masks

    def chosen(self, outputs: Any) -> list[int | None]:
        """Per sample, the index of the chosen box in its output (None when there is none)."""
        if not isinstance(outputs, Sequence) or not all(isinstance(o, Mapping) for o in outputs):
            raise ValueError(
                "DetectionTarget: expected a list of dicts with 'boxes', 'labels' and 'scores' (a "
                f"torchvision detector in eval mode), got {type(outputs).__name__}"
            )
        if self.uses_batch:
            if self._held is None:
                raise ValueError(
                    "DetectionTarget(match='box') needs the batch's boxes: call .bind(masks=boxes) in Python"
                )
            if len(self._held) != len(outputs):
                raise ValueError(f"DetectionTarget: {len(self._held)} boxes for {len(outputs)} outputs")
        picks: list[int | None] = []
        for index, detections in enumerate(outputs):
            scores = detections["scores"].detach()
            keep = torch.ones_like(scores, dtype=torch.bool)
            if self.class_index is not None:
                keep &= detections["labels"] == self.class_index
            rank = scores
            if self.uses_batch and self._held is not None:
                truth = self._held[index].to(detections["boxes"])
                overlap = box_iou(detections["boxes"].detach(), truth[None])[:, 0]
                keep &= overlap > 0
                rank = overlap + 1e-6 * scores  # the best overlap; the score breaks ties
            if not bool(keep.any()):
                picks.append(None)
                continue
            candidates = keep.nonzero()[:, 0]
            picks.append(int(candidates[rank[candidates].argmax()]))
        return picks

    def __call__(self, outputs: Any) -> Tensor:
        """``[B]`` the chosen box's score per sample (0 where there is none)."""
        picks = self.chosen(outputs)
        if all(pick is None for pick in picks):
            which = f" of label {self.class_index}" if self.class_index is not None else ""
            where = " overlapping the ground-truth box" if self.uses_batch else ""
            raise NoDetectionsError(
                f"the detector returned no box{which}{where} for any of the {len(picks)} samples, so there "
                "is nothing to explain (an untrained detector keeps no box above its score threshold: lower "
                "it, e.g. `box_score_thresh=0.0` for torchvision's Faster R-CNN)"
            )
        reference = next(o["scores"] for o, p in zip(outputs, picks, strict=True) if p is not None)
        scores = [
            o["scores"][p] if p is not None else reference.new_zeros(())
            for o, p in zip(outputs, picks, strict=True)
        ]
        return torch.stack(scores)


# ---------------------------------------------------------------------------------------------- multi-label


class MultiLabelTarget(_BatchRows):
    """One logit per sample of a multi-label classifier (``[B, C]`` logits, one sigmoid per class).

    Args:
        class_index: explain this class for every sample; None: per sample the highest-scoring of its
            positive labels (multi-hot ``[B, C]`` labels from the batch), or of all classes when a sample has
            no positive label.
    """

    def __init__(self, class_index: int | None = None) -> None:
        self.class_index = _optional_class("class_index", class_index)
        self.uses_batch = self.class_index is None

    def _from_batch(self, labels: Tensor | None, masks: Tensor | None) -> Tensor | None:
        return labels  # the batch's multi-hot labels [B, C]

    def classes(self, outputs: Tensor) -> Tensor:
        """The class explained for each sample ``[B]``."""
        if not isinstance(outputs, Tensor) or outputs.dim() != 2:
            got = tuple(outputs.shape) if isinstance(outputs, Tensor) else type(outputs).__name__
            raise ValueError(f"MultiLabelTarget: expected logits [B, classes], got {got}")
        batch, count = outputs.shape
        if self.class_index is not None:
            if self.class_index >= count:
                raise ValueError(
                    f"MultiLabelTarget: class {self.class_index} is out of range for {count} classes "
                    f"(valid: 0..{count - 1})"
                )
            return torch.full((batch,), self.class_index, dtype=torch.long, device=outputs.device)
        labels = self._held
        if labels is None:
            raise ValueError(
                "MultiLabelTarget() without `class_index` needs the batch's multi-hot labels [B, C]: the "
                "batches carry none (set `label_key`), or call .bind(labels=...) in Python"
            )
        if tuple(labels.shape) != (batch, count):
            raise ValueError(
                f"MultiLabelTarget: labels {tuple(labels.shape)} do not fit logits {(batch, count)}"
            )
        positive = labels.to(outputs.device) > 0
        detached = outputs.detach()
        masked = detached.masked_fill(~positive, float("-inf"))
        masked = torch.where(positive.any(dim=1, keepdim=True), masked, detached)
        return masked.argmax(dim=1)

    def __call__(self, outputs: Any) -> Tensor:
        """``[B]`` the chosen class's logit per sample."""
        classes = self.classes(outputs)
        scores: Tensor = outputs.gather(1, classes[:, None])[:, 0]
        return scores


# ---------------------------------------------------------------------------------------------- regression


class RegressionTarget(ScoreTarget):
    """The model's output itself, for regression: outputs ``[B]``, ``[B, 1]`` (or ``[B, K]`` with ``index``).

    Args:
        index: which of ``K`` outputs to explain; None for a single output.
        negate: explain what lowers the output instead of what raises it.
    """

    def __init__(self, index: int | None = None, negate: bool = False) -> None:
        self.index = _optional_class("index", index)
        self.negate = check_bool("negate", negate)

    def __call__(self, outputs: Any) -> Tensor:
        """``[B]`` the (chosen) output per sample, negated with ``negate``."""
        if not isinstance(outputs, Tensor) or outputs.dim() not in (1, 2):
            got = tuple(outputs.shape) if isinstance(outputs, Tensor) else type(outputs).__name__
            raise ValueError(f"RegressionTarget: expected outputs [B] or [B, K], got {got}")
        if outputs.dim() == 2:
            if self.index is None and outputs.shape[1] != 1:
                raise ValueError(
                    f"RegressionTarget: the model gives {outputs.shape[1]} outputs per sample; pick one with "
                    f"`index` (0..{outputs.shape[1] - 1})"
                )
            index = self.index or 0
            if index >= outputs.shape[1]:
                raise ValueError(
                    f"RegressionTarget: `index` {index} is out of range for {outputs.shape[1]} outputs"
                )
            outputs = outputs[:, index]
        scores: Tensor = -outputs if self.negate else outputs
        return scores


# ---------------------------------------------------------------------------------------------- Finer-CAM

FINER_RANKS = (1, 2, 3)
"""The similar classes Finer-CAM compares against by default: the three closest to the target."""


def _check_ranks(ranks: Any) -> tuple[int, ...]:
    if isinstance(ranks, (str, bytes)) or not isinstance(ranks, Sequence):
        raise TypeError(f"`ranks` must be a list of ints, got {type(ranks).__name__} {ranks!r}")
    if not ranks:
        raise ValueError("`ranks` must hold at least one rank, e.g. [1, 2, 3]")
    return tuple(dict.fromkeys(check_int("ranks", rank, minimum=1) for rank in ranks))


def finer_scores(
    logits: Tensor, classes: Tensor, ranks: Sequence[int] = FINER_RANKS, alpha: float = 1.0
) -> Tensor:
    """Finer-CAM's contrastive score ``[B]``: ``sum_d p_d (y_c - alpha y_d) / sum_d p_d``.

    ``y`` are the pre-softmax ``logits [B, C]``, ``c`` each sample's class (``classes [B]``), ``d`` its
    similar classes: the classes other than ``c`` ranked by their logit, highest first, taking the ranks
    ``ranks`` (1 the closest; ranks past the last class are left out), and ``p_d`` their softmax
    probabilities, held fixed (no gradient flows through them). A model with a single class has nothing to
    compare against: ValueError.
    """
    batch, count = logits.shape
    picks = [rank - 1 for rank in ranks if rank < count]
    if not picks:
        raise ValueError(
            f"FinerTarget: no class to compare against at ranks {list(ranks)} among {count} classes"
        )
    detached = logits.detach().float()
    others = detached.scatter(1, classes[:, None], float("-inf"))  # the target never compares with itself
    order = torch.sort(others, dim=1, descending=True, stable=True).indices
    similar = order[:, picks]  # [B, R]
    weights = detached.softmax(dim=1).gather(1, similar)
    contrast = logits.gather(1, classes[:, None]) - alpha * logits.gather(1, similar)
    return (weights.to(contrast.dtype) * contrast).sum(dim=1) / weights.sum(dim=1).to(contrast.dtype)


class FinerTarget(ScoreTarget):
    """Finer-CAM's target: the class's logit minus those of the classes most like it (``[B, C]`` logits).

    From Zhang et al. 2025, "Finer-CAM: Spotting the Difference Reveals Finer Details for Visual
    Explanation". ``score = sum_d p_d (y_c - alpha y_d) / sum_d p_d`` over the similar classes ``d`` at
    ``ranks`` (see :func:`finer_scores`). Explaining it shows what sets the class apart from its look-alikes
    rather than what they share. Usable with every method, and what the method ``finercam`` explains.

    Which definition: the weighted one of pytorch-grad-cam's ``FinerCAM`` (the paper's authors' own
    implementation: ranks 1-3, ``alpha`` 1), not TorchCAM's ``y_c - 0.6 mean_d(y_d)``: it is the paper's
    formula and what users bringing pytorch-grad-cam's method names expect. Two choices of ours: ranks are
    counted among the classes other than ``c`` (the same classes as pytorch-grad-cam's positions 1-3 of the
    sorted logits when ``c`` is the predicted class, and never ``c`` itself otherwise), and the weights
    ``p_d`` are held fixed, so the explained score is the linear contrast the formula writes (pytorch-grad-cam
    also back-propagates through the softmax that makes them). For Score-CAM and Ablation-CAM each perturbed
    copy picks its similar classes from its own output.

    Args:
        class_index: the class ``c`` for every sample; None: each sample's predicted (argmax) class.
        ranks: which similar classes to compare against, 1 the closest.
        alpha: how much of the similar classes' logits to subtract (0 gives back the plain logit).
    """

    def __init__(
        self, class_index: int | None = None, ranks: Sequence[int] = FINER_RANKS, alpha: float = 1.0
    ) -> None:
        self.class_index = _optional_class("class_index", class_index)
        self.ranks = _check_ranks(ranks)
        self.alpha = check_float("alpha", alpha)

    def __call__(self, outputs: Any) -> Tensor:
        """``[B]`` the contrastive score of each sample."""
        if not isinstance(outputs, Tensor) or outputs.dim() != 2:
            got = tuple(outputs.shape) if isinstance(outputs, Tensor) else type(outputs).__name__
            raise ValueError(f"FinerTarget: expected logits [B, classes], got {got}")
        target: Target = "predicted" if self.class_index is None else self.class_index
        return finer_scores(outputs, _classes(target, outputs), self.ranks, self.alpha)
