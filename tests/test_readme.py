"""Every name the README tells a reader to import is importable from where it says."""

from __future__ import annotations

import importlib
import re
from pathlib import Path

import pytest

README = (Path(__file__).resolve().parent.parent / "README.md").read_text(encoding="utf-8")

IMPORTS = sorted(
    {
        (module, name.strip())
        for module, names in re.findall(r"from (cam_callback[\w.]*) import ([\w, ]+)", README)
        for name in names.split(",")
        if name.strip()
    }
)
DOTTED = sorted(set(re.findall(r"`(cam_callback(?:\.\w+)+)`", README)))


def test_the_readme_names_imports():
    assert ("cam_callback", "CAMConfigurationError") in IMPORTS
    assert ("cam_callback.sinks", "WriteFailure") in IMPORTS
    assert len(IMPORTS) >= 6 and len(DOTTED) >= 5


@pytest.mark.parametrize(("module", "name"), IMPORTS, ids=[f"{m}.{n}" for m, n in IMPORTS])
def test_every_from_import_in_the_readme_works(module, name):
    assert getattr(importlib.import_module(module), name) is not None


@pytest.mark.parametrize("path", DOTTED)
def test_every_dotted_name_in_the_readme_exists(path):
    try:
        importlib.import_module(path)
    except ModuleNotFoundError:
        parent, _, name = path.rpartition(".")
        assert hasattr(importlib.import_module(parent), name), path
