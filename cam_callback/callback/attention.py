"""The attention alarm: when the focus numbers say the model looks at a fixed place or at the border.

A rule reads one focus number (:mod:`cam_callback.core.focus`) of one (layer, method) and fires when it is
above its threshold and, when the run has a step-0 frame, also above that frame's value by a margin: an
untrained model's maps are alike and may lean on the border by themselves (Grad-CAM++'s consistency was
0.95-0.98 before any training in the measured runs), so only what training added counts. The thresholds
and margins come from measured runs (README, "The attention alarm"; reproduced by
``benchmarks/attention_alarm.py``): clean runs with objects at random positions stay below them at every
validation after the step-0 frame; 9 of 10 runs that learned a class-coded mark go above.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

__all__ = ["RULES", "Alarm", "AlarmRule", "alarms", "alarm_message"]

MapKey = tuple[str, str]  # (layer, method)


@dataclass(frozen=True)
class AlarmRule:
    """Fire when focus number ``number`` exceeds ``threshold`` and its step-0 value by ``margin``."""

    cause: str
    number: str
    threshold: float
    margin: float


RULES: tuple[AlarmRule, ...] = (
    AlarmRule("a fixed place whatever the object", "consistency", 0.92, 0.05),
    AlarmRule("the image's border", "border_share", 1.35, 0.2),
)
"""The alarm's rules (thresholds measured: README, "The attention alarm")."""


@dataclass(frozen=True)
class Alarm:
    """One rule fired for one (layer, method)."""

    key: MapKey
    rule: AlarmRule
    value: float
    start: float | None = None


def alarms(
    focus: Mapping[MapKey, Mapping[str, float]],
    start: Mapping[MapKey, Mapping[str, float]] | None = None,
    rules: tuple[AlarmRule, ...] | None = None,
) -> list[Alarm]:
    """Every rule (of :data:`RULES` by default) that fires on the focus numbers of each (layer, method).

    ``start`` holds the step-0 frame's numbers, when the run has one (then a rule needs its margin too).
    """
    fired = []
    for key, numbers in focus.items():
        for rule in RULES if rules is None else rules:
            value = numbers.get(rule.number)
            before = (start or {}).get(key, {}).get(rule.number)
            if value is None or value <= rule.threshold:
                continue
            if before is None or value > before + rule.margin:
                fired.append(Alarm(key, rule, value, before))
    return fired


def alarm_message(alarm: Alarm, step: int, tag: str) -> str:
    """What the warning says: where, which number, its value and threshold, and the images to look at."""
    layer, method = alarm.key
    rule = alarm.rule
    since = f", {alarm.start:.3f} at step 0" if alarm.start is not None else ""
    return (
        f"the {method} maps of layer {layer!r} look at {rule.cause}: {rule.number} is {alarm.value:.3f} "
        f"at step {step} (threshold {rule.threshold}{since}). Look at the images under the tag {tag!r}: "
        "a mark, frame or corner the model may use instead of the object (a shortcut)"
    )
