"""The attention alarm: when the focus numbers say the model looks at a fixed place whatever the object.

A rule reads one focus number (:mod:`cam_callback.core.focus`) of one (layer, method) and fires when it is
above its threshold and, when the run has a step-0 frame, also above that frame's value by a margin: an
untrained model's maps may be alike already (up to 0.89 ``consistency`` before any training in the measured
runs), so only what training added counts. The one rule reads ``consistency``; the message says the place
is the image's border when ``border_share`` is above :data:`BORDER_SHARE` too. ``border_share`` alone does
not fire: clean runs reached 1.37 (zero padding lights up the edges of some layers). A layer whose maps have
fewer than :data:`MIN_CELLS` cells on a side is not judged: its upsampled maps are a few broad blobs, alike
whatever the model looks at. The alarm judges single-label classification only, and only once the model
has learned something (:func:`learned`): the maps of a model that guesses are alike without any shortcut
(0.87 at chance accuracy in a measured run). The threshold and margin come from measured runs (README,
"The attention alarm"; reproduced by ``benchmarks/attention_alarm.py``).
"""

from __future__ import annotations

import math
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

__all__ = ["BORDER_SHARE", "MIN_CELLS", "RULES", "Alarm", "AlarmRule", "alarm_message", "alarms", "learned"]

MapKey = tuple[str, str]  # (layer, method)


@dataclass(frozen=True)
class AlarmRule:
    """Fire when focus number ``number`` exceeds ``threshold`` and its step-0 value by ``margin``."""

    cause: str
    number: str
    threshold: float
    margin: float


RULES: tuple[AlarmRule, ...] = (AlarmRule("a fixed place whatever the object", "consistency", 0.75, 0.1),)
"""The alarm's rules (thresholds measured: README, "The attention alarm")."""

BORDER_SHARE = 1.3
"""Above this ``border_share`` the message says the fixed place is on the image's border."""

MIN_CELLS = 4
"""The fewest cells a side of a layer's maps must have for the alarm to judge them."""


@dataclass(frozen=True)
class Alarm:
    """One rule fired for one (layer, method)."""

    key: MapKey
    rule: AlarmRule
    value: float
    start: float | None = None
    border_share: float | None = None


def learned(outputs: Any, labels: Tensor | None) -> bool:
    """Whether a classifier is right on more of the samples than halfway from chance to all of them.

    ``outputs``: the logits ``[B, C]``; ``labels``: class indices ``[B]``. Chance is the better of guessing
    (1 / C) and always naming the samples' most frequent class (a model that names one class is right on
    every sample of a batch of that class), so a batch of a single class is never judged. False for
    anything else (no labels, other tasks): the alarm judges only classifiers it can see have learned.
    """
    if not isinstance(outputs, Tensor) or outputs.dim() != 2 or outputs.shape[1] < 2:
        return False
    if labels is None or labels.dim() != 1 or labels.is_floating_point() or len(labels) != len(outputs):
        return False
    labels = labels.detach().to(outputs.device)
    majority = float(torch.unique(labels, return_counts=True)[1].max()) / len(labels)
    chance = max(1.0 / outputs.shape[1], majority)
    right = float((outputs.detach().argmax(dim=1) == labels).float().mean())
    return right > (1.0 + chance) / 2


def alarms(
    focus: Mapping[MapKey, Mapping[str, float]],
    start: Mapping[MapKey, Mapping[str, float]] | None = None,
    rules: tuple[AlarmRule, ...] | None = None,
    coarse: Collection[MapKey] = (),
) -> list[Alarm]:
    """Every rule (of :data:`RULES` by default) that fires on the focus numbers of each (layer, method).

    ``start`` holds the step-0 frame's numbers, when the run has one (then a rule needs its margin too);
    the pairs in ``coarse`` (maps of fewer than :data:`MIN_CELLS` cells a side) are not judged.
    """
    fired = []
    for key, numbers in focus.items():
        if key in coarse:
            continue
        for rule in RULES if rules is None else rules:
            value = numbers.get(rule.number)
            before = (start or {}).get(key, {}).get(rule.number)
            if before is not None and not math.isfinite(before):
                before = None  # a step-0 value that could not be computed: the threshold alone counts
            if value is None or not value > rule.threshold:  # NaN (no value could be computed) never fires
                continue
            if before is None or value > before + rule.margin:
                fired.append(Alarm(key, rule, value, before, numbers.get("border_share")))
    return fired


def alarm_message(alarm: Alarm, step: int, tag: str, samples: str = "") -> str:
    """What the warning says: where, which number, its value and threshold, and the images to look at.

    ``samples``: which samples' maps, when not the validation samples' (``" for the training samples"``).
    """
    layer, method = alarm.key
    rule = alarm.rule
    since = f", {alarm.start:.3f} at step 0" if alarm.start is not None else ""
    border = alarm.border_share
    where = f" on the image's border (border_share {border:.2f})" if border and border > BORDER_SHARE else ""
    return (
        f"the {method} maps of layer {layer!r}{samples} look at {rule.cause}{where}: "
        f"{rule.number} is {alarm.value:.3f} at step {step} (threshold {rule.threshold}{since}). "
        f"Look at the images under the tag {tag!r}: "
        "a mark, frame or corner the model may use instead of the object (a shortcut)"
    )
