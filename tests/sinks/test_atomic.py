"""All-or-nothing writes: a file replaced whole, bytes appended at a known end, and what a failure says."""

from __future__ import annotations

import errno

import pytest
from full_disk import FullDisk

from cam_callback.sinks.atomic import WriteFailure, append_at, describe_records, out_of_space, replace_file


def test_replace_file_keeps_the_old_bytes_when_the_disk_is_full(tmp_path, monkeypatch):
    disk = FullDisk(monkeypatch)
    target = tmp_path / "a" / "image.png"
    replace_file(target, b"old bytes")
    disk.full = True
    with pytest.raises(OSError) as raised:
        replace_file(target, b"new bytes, longer than the old")
    assert raised.value.errno == errno.ENOSPC
    assert target.read_bytes() == b"old bytes"
    assert [p.name for p in target.parent.iterdir()] == ["image.png"]  # no temporary file left
    with pytest.raises(OSError):
        replace_file(tmp_path / "b.png", b"never")
    assert not (tmp_path / "b.png").exists()  # no empty file either
    disk.full = False
    replace_file(target, b"new")
    assert target.read_bytes() == b"new"


def test_append_at_cuts_a_half_write_back_to_the_known_end(tmp_path, monkeypatch):
    disk = FullDisk(monkeypatch)
    path = tmp_path / "records"
    end = append_at(path, b"0123456789", 0)
    assert end == 10
    disk.full = True
    with pytest.raises(OSError):
        append_at(path, b"abcdefgh", end)
    assert disk.failures == 1
    assert path.read_bytes() == b"0123456789"  # the half written "abcd" is gone
    disk.full = False
    assert append_at(path, b"XY", end) == 12
    assert path.read_bytes() == b"0123456789XY"


def test_append_at_writes_at_the_offset_it_is_given(tmp_path):
    path = tmp_path / "records"
    path.write_bytes(b"good|torn")
    assert append_at(path, b"next", 5) == 9
    assert path.read_bytes() == b"good|next"


def test_a_write_failure_names_what_it_lost_and_kept():
    error = OSError(errno.ENOSPC, "No space left on device")
    lost, kept = [("cam/x", 3), ("cam_heatmap/x", 3)], [("cam/x", 5)]
    failure = WriteFailure("run/events", error, lost=lost, kept=kept)
    assert isinstance(failure, OSError) and failure.errno == errno.ENOSPC
    assert str(failure) == (
        "could not write run/events ([Errno 28] No space left on device); lost: step 3 (cam/x, "
        "cam_heatmap/x); kept to write at the next validation: step 5 (cam/x)"
    )


def test_describe_records_shows_the_first_steps_and_counts_the_rest():
    records = [("t", step) for step in range(6)]
    assert describe_records(records) == "step 0 (t); step 1 (t); step 2 (t); step 3 (t); and 2 more steps"
    assert describe_records([]) == "nothing"


def test_only_a_full_disk_or_quota_is_worth_trying_again():
    assert out_of_space(OSError(errno.ENOSPC, "No space left on device"))
    assert out_of_space(OSError(errno.EDQUOT, "Disk quota exceeded"))
    assert not out_of_space(IsADirectoryError(errno.EISDIR, "Is a directory"))
    assert not out_of_space(OSError("no errno"))
