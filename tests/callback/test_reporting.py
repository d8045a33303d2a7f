"""How the callback tells the user: each warning once per run, and the skip-or-raise rule of `strict`."""

from __future__ import annotations

import errno
import warnings

import pytest

from cam_callback.callback.reporting import Reporter
from cam_callback.sinks import WriteFailure


def test_a_warning_is_said_once_per_key():
    reporter = Reporter("GradCAMCallback", strict=False)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        reporter.once("few", "only 3 samples")
        reporter.once("few", "only 3 samples")
        reporter.once("no-val", "no validation data")
    assert [(w.category, str(w.message)) for w in caught] == [
        (UserWarning, "GradCAMCallback: only 3 samples"),
        (UserWarning, "GradCAMCallback: no validation data"),
    ]


def test_a_skipped_step_warns_unless_strict():
    error = OSError("disk full")
    with pytest.warns(RuntimeWarning, match=r"^Cam skipped the maps at step 4: OSError: disk full$"):
        Reporter("Cam", strict=False).skip(error, "the maps at step 4")
    with pytest.raises(OSError) as raised:
        Reporter("Cam", strict=True).skip(error, "the maps at step 4")
    assert raised.value is error


def test_writer_failures_warn_or_raise_and_quietly_only_warn():
    errors = [OSError("a"), OSError("b")]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        Reporter("Cam", strict=False).writer_failures(errors)
        Reporter("Cam", strict=True).writer_failures(errors, quiet=True)
    assert [str(w.message) for w in caught] == [
        "Cam skipped writing some maps of an earlier validation: OSError: a",
        "Cam skipped writing some maps of an earlier validation: OSError: b",
        "Cam could not write: OSError: a",
        "Cam could not write: OSError: b",
    ]
    with pytest.raises(OSError, match="a"):
        Reporter("Cam", strict=True).writer_failures(errors)


def test_information_is_told_once_per_key_and_is_no_warning(caplog):
    lines: list[str] = []
    reporter = Reporter("GradCAMCallback", strict=False, info=lines.append)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a warning would raise here
        reporter.tell("names", "each validation logs a, b")
        reporter.tell("names", "each validation logs a, b")
    assert lines == ["GradCAMCallback: each validation logs a, b"]
    plain = Reporter("GradCAMCallback", strict=False)  # no Lightning: the cam_callback logger at INFO
    with caplog.at_level("INFO", logger="cam_callback"):
        plain.tell("names", "x")
    assert [(r.name, r.getMessage()) for r in caplog.records] == [("cam_callback", "GradCAMCallback: x")]


def _full(lost, kept):
    return WriteFailure("run/events", OSError(errno.ENOSPC, "No space left on device"), lost, kept)


def test_a_full_disk_is_warned_once_naming_what_was_lost():
    reporter = Reporter("Cam", strict=False)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        reporter.writer_failures([_full([], [("cam/x", 0)])])  # kept for the next write: nothing lost yet
        assert caught == []
        reporter.writer_failures([_full([("cam/x", 0), ("cam_heatmap/x", 0)], [("cam/x", 5)])])
        reporter.writer_failures([_full([("cam/x", 5)], [("cam/x", 11)])])  # not warned again
        reporter.unwritten([("cam/x", 11)])
    assert [(w.category, str(w.message)) for w in caught] == [
        (
            RuntimeWarning,
            "Cam: could not write run/events ([Errno 28] No space left on device); lost: step 0 (cam/x, "
            "cam_heatmap/x). While writing fails, only the latest validation's images and numbers are kept "
            "to write later; later losses of this run are not warned again",
        )
    ]


def test_what_is_still_waiting_when_the_run_ends_is_warned_as_lost():
    reporter = Reporter("Cam", strict=False)
    with pytest.warns(RuntimeWarning, match=r"^Cam: could not write everything .*lost: step 11 \(cam/x\)$"):
        reporter.unwritten([("cam/x", 11)])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        reporter.unwritten([])


def test_a_full_disk_is_raised_under_strict():
    with pytest.raises(WriteFailure):
        Reporter("Cam", strict=True).writer_failures([_full([], [("cam/x", 0)])])
