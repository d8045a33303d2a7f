"""`num_workers: null` in the image-folder config picks a number of loader workers that fits the machine."""

from __future__ import annotations

import os

import pytest
from test_cli import _image_folder

from cam_callback.demo import ImageFolderDataModule
from cam_callback.demo.datamodules import fitting_workers


def test_fitting_workers_leave_one_core_free_and_stop_at_four(monkeypatch):
    for cores, expected in ((1, 0), (2, 1), (3, 2), (16, 4)):
        monkeypatch.setattr(os, "sched_getaffinity", lambda _pid, n=cores: set(range(n)))
        assert fitting_workers() == expected


def test_none_means_fitting_workers_and_negative_is_refused(tmp_path):
    folder = str(_image_folder(tmp_path / "images", per_class=2))
    assert ImageFolderDataModule(folder, num_workers=None).num_workers == fitting_workers()
    with pytest.raises(ValueError, match="or None to fit the machine"):
        ImageFolderDataModule(folder, num_workers=-1)
