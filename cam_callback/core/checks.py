"""Argument checks shared by every floor: a wrong type raises ``TypeError``, a bad value ``ValueError``.

Each message names the argument in backticks, what came, and what would be valid.
"""

from __future__ import annotations

import difflib
import math
from collections.abc import Iterable, Sequence
from typing import Any

__all__ = [
    "check_bool",
    "check_choice",
    "check_float",
    "check_floats",
    "check_int",
    "check_real",
    "check_str",
    "closest",
]


def closest(value: str, choices: Iterable[str], count: int = 3) -> list[str]:
    """The valid names nearest to ``value`` (case-insensitive), best first; may be empty."""
    return difflib.get_close_matches(value.lower(), list(choices), n=count, cutoff=0.4)


def check_int(name: str, value: Any, *, minimum: int | None = None) -> int:
    """``value`` as an int (a bool is refused), at least ``minimum`` when given."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"`{name}` must be an int, got {type(value).__name__} {value!r}")
    if minimum is not None and value < minimum:
        raise ValueError(f"`{name}` must be at least {minimum}, got {value}")
    return value


def check_bool(name: str, value: Any) -> bool:
    """``value`` if it is a bool (true or false in YAML)."""
    if not isinstance(value, bool):
        raise TypeError(f"`{name}` must be a bool (true or false), got {type(value).__name__} {value!r}")
    return value


def check_real(name: str, value: Any) -> float:
    """``value`` as a float if it is a real number (ints accepted, bools refused); NaN and inf pass."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"`{name}` must be a number, got {type(value).__name__} {value!r}")
    return float(value)


def check_float(name: str, value: Any, *, low: float | None = None, high: float | None = None) -> float:
    """``value`` as a finite float (ints accepted, bools refused), inside ``[low, high]`` when given."""
    number = check_real(name, value)
    if low is not None and high is not None:
        wanted = f"in [{low:g}, {high:g}]"
    elif low is not None:
        wanted = f"a finite number >= {low:g}"
    elif high is not None:
        wanted = f"a finite number <= {high:g}"
    else:
        wanted = "a finite number"
    if (
        not math.isfinite(number)
        or (low is not None and number < low)
        or (high is not None and number > high)
    ):
        raise ValueError(f"`{name}` must be {wanted}, got {value!r}")
    return number


def check_floats(name: str, values: Any, *, positive: bool = False) -> tuple[float, ...]:
    """A non-empty sequence of finite numbers (each ``> 0`` with ``positive``), as a tuple of floats."""
    if isinstance(values, (str, bytes)) or not isinstance(values, Sequence):
        raise TypeError(f"`{name}` must be a list of numbers, got {type(values).__name__} {values!r}")
    if not values:
        raise ValueError(f"`{name}` must hold at least one number")
    numbers = tuple(check_float(name, value) for value in values)
    if positive and any(number <= 0 for number in numbers):
        raise ValueError(f"`{name}` must hold positive numbers, got {list(values)!r}")
    return numbers


def check_str(name: str, value: Any) -> str:
    """``value`` if it is a str."""
    if not isinstance(value, str):
        raise TypeError(f"`{name}` must be a str, got {type(value).__name__} {value!r}")
    return str(value)


def check_choice(name: str, value: Any, choices: Sequence[str]) -> str:
    """``value`` if it is one of ``choices``; else the error lists them, closest first."""
    text = check_str(name, value)
    if text not in choices:
        near = closest(text, choices)
        hint = f" (did you mean {near[0]!r}?)" if near else ""
        raise ValueError(f"`{name}`: unknown {value!r}{hint}; valid: {', '.join(map(repr, choices))}")
    return text
