"""The class names for captions: given, or read from the data module or the dataset when they have them."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

__all__ = ["check_class_names", "find_class_names"]

_MAX_WRAPPERS = 8  # Subset of a Subset of ...: how deep to look for a `classes`


def check_class_names(value: Any) -> list[str] | None:
    """``value`` as a list of str, or None; a wrong type raises ``TypeError`` naming ``class_names``."""
    if value is None:
        return None
    if isinstance(value, str) or not isinstance(value, Sequence):
        raise TypeError(f"`class_names` must be a list of str, got {type(value).__name__} {value!r}")
    for name in value:
        if not isinstance(name, str):
            raise TypeError(f"`class_names` must hold only str, got {type(name).__name__} {name!r}")
    return list(value)


def _names_of(holder: Any) -> list[str] | None:
    classes = getattr(holder, "classes", None)
    if isinstance(classes, Sequence) and not isinstance(classes, str) and classes:
        if all(isinstance(name, str) for name in classes):
            return list(classes)
    return None


def find_class_names(datamodule: Any, loader: Any) -> list[str] | None:
    """``classes`` of the data module, else of the loader's dataset or the datasets it wraps, else None.

    torchvision's ``ImageFolder`` and the demo's data modules have ``classes`` (a list of str); wrappers such
    as ``Subset`` are looked through by their ``dataset`` attribute.
    """
    found = _names_of(datamodule) if datamodule is not None else None
    dataset = getattr(loader, "dataset", None)
    for _ in range(_MAX_WRAPPERS):
        if found is not None or dataset is None:
            break
        found = _names_of(dataset)
        dataset = getattr(dataset, "dataset", None)
    return found
