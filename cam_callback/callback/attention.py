"""The attention alarm: when the focus numbers say the model looks at a fixed place or at the border.

A rule reads one focus number (:mod:`cam_callback.core.focus`) of one (layer, method) and fires above its
threshold. The thresholds come from measured runs (README, "The attention alarm"; reproduced by
``benchmarks/attention_alarm.py``): clean runs with objects at random positions stay below them at every
validation after the step-0 frame, runs that learned a class-coded mark go above.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

__all__ = ["RULES", "Alarm", "AlarmRule", "alarms", "alarm_message"]

MapKey = tuple[str, str]  # (layer, method)


@dataclass(frozen=True)
class AlarmRule:
    """Fire when focus number ``number`` exceeds ``threshold``; ``cause`` says what that means."""

    cause: str
    number: str
    threshold: float


RULES: tuple[AlarmRule, ...] = (
    AlarmRule("a fixed place whatever the object", "consistency", 0.95),
    AlarmRule("the image's border", "border_share", 1.8),
)
"""The alarm's rules (thresholds measured: README, "The attention alarm")."""


@dataclass(frozen=True)
class Alarm:
    """One rule fired for one (layer, method)."""

    key: MapKey
    rule: AlarmRule
    value: float


def alarms(
    focus: Mapping[MapKey, Mapping[str, float]], rules: tuple[AlarmRule, ...] | None = None
) -> list[Alarm]:
    """Every rule (of :data:`RULES` by default) that fires on the focus numbers of each (layer, method)."""
    rules = RULES if rules is None else rules
    return [
        Alarm(key, rule, numbers[rule.number])
        for key, numbers in focus.items()
        for rule in rules
        if rule.number in numbers and numbers[rule.number] > rule.threshold
    ]


def alarm_message(alarm: Alarm, step: int, tag: str) -> str:
    """What the warning says: where, which number, its value and threshold, and the images to look at."""
    layer, method = alarm.key
    rule = alarm.rule
    return (
        f"the {method} maps of layer {layer!r} look at {rule.cause}: {rule.number} is {alarm.value:.3f} "
        f"(above the threshold {rule.threshold}) at step {step}. Look at the images under the tag {tag!r}: "
        "a mark, frame or corner the model may use instead of the object (a shortcut)"
    )
