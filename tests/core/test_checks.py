"""The shared argument checks: wrong type -> TypeError, bad value -> ValueError, the argument always named."""

from __future__ import annotations

import math

import pytest

from cam_callback.core.checks import (
    check_bool,
    check_choice,
    check_float,
    check_floats,
    check_int,
    check_real,
)


def test_check_int_accepts_ints_and_refuses_bools_floats_and_small_values():
    assert check_int("n", 3, minimum=1) == 3
    assert check_int("n", -4) == -4
    with pytest.raises(TypeError, match=r"`n` must be an int, got bool True"):
        check_int("n", True)
    with pytest.raises(TypeError, match=r"`n` must be an int, got float 2.5"):
        check_int("n", 2.5)
    with pytest.raises(TypeError, match=r"`n` must be an int, got str 'a'"):
        check_int("n", "a")
    with pytest.raises(ValueError, match=r"`n` must be at least 1, got 0"):
        check_int("n", 0, minimum=1)


def test_check_bool_refuses_truthy_non_bools():
    assert check_bool("flag", False) is False
    for value in ("yes", 1, None):
        with pytest.raises(TypeError, match="`flag` must be a bool"):
            check_bool("flag", value)


def test_check_float_names_the_range():
    assert check_float("alpha", 1) == 1.0
    assert check_float("alpha", 0.5, low=0.0, high=1.0) == 0.5
    with pytest.raises(ValueError, match=r"`alpha` must be in \[0, 1\], got 1.5"):
        check_float("alpha", 1.5, low=0.0, high=1.0)
    with pytest.raises(ValueError, match=r"`alpha` must be in \[0, 1\], got nan"):
        check_float("alpha", math.nan, low=0.0, high=1.0)
    with pytest.raises(ValueError, match=r"`x` must be a finite number >= 2, got 1"):
        check_float("x", 1, low=2)
    with pytest.raises(ValueError, match=r"`x` must be a finite number, got inf"):
        check_float("x", math.inf)
    with pytest.raises(TypeError, match=r"`alpha` must be a number, got str 'a'"):
        check_float("alpha", "a")
    with pytest.raises(TypeError, match="`alpha` must be a number, got bool"):
        check_float("alpha", False)
    assert math.isnan(check_real("x", math.nan))


def test_check_floats_wants_a_non_empty_list_of_numbers():
    assert check_floats("std", [1, 0.5], positive=True) == (1.0, 0.5)
    with pytest.raises(TypeError, match="`std` must be a list of numbers, got float 0.2"):
        check_floats("std", 0.2)
    with pytest.raises(TypeError, match="`std` must be a list of numbers, got str"):
        check_floats("std", "0.2")
    with pytest.raises(ValueError, match="`std` must hold at least one number"):
        check_floats("std", [])
    with pytest.raises(ValueError, match=r"`std` must hold positive numbers, got \[0.2, 0\]"):
        check_floats("std", [0.2, 0], positive=True)
    with pytest.raises(TypeError, match="`std` must be a number"):
        check_floats("std", [0.2, None])


def test_check_choice_lists_the_valid_values_and_the_closest():
    assert check_choice("image_format", "png", ("png", "jpeg")) == "png"
    message = r"`image_format`: unknown 'jpg' \(did you mean 'jpeg'\?\); valid: 'png', 'jpeg'"
    with pytest.raises(ValueError, match=message):
        check_choice("image_format", "jpg", ("png", "jpeg"))
    with pytest.raises(TypeError, match="`image_format` must be a str, got int 3"):
        check_choice("image_format", 3, ("png", "jpeg"))
