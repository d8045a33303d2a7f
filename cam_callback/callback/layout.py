"""The numbers grouped for TensorBoard's Custom Scalars dashboard: a category per (layer, method).

Each category holds one chart per family of numbers (``drift``, and any other family whose metric names
follow :meth:`~cam_callback.callback.publishing.Display.number`), so the family list comes from the names
logged, not from a list kept here. A chart's tags are one regular expression: the family's escaped name
prefix for that pair, which matches every number of the family (``re.match``, as TensorBoard reads it), also
those that appear only from a later validation on (``change_*`` needs a previous frame).
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from ..sinks import ChartGroup
from .publishing import Display, MapKey

__all__ = ["number_layout"]


def number_layout(names: Iterable[str], display: Display) -> list[ChartGroup]:
    """The categories for the metric ``names`` (those not made by ``display.number`` are left out).

    Categories come in the order their pairs first appear, charts in the order their families do; each
    category is titled by the pair's overlay tag (``cam/layer4/gradcam``), each chart by its family.
    """
    families: dict[MapKey, list[str]] = {}
    for name in names:
        parts = display.number_parts(name)
        if parts is None:
            continue
        family, key, _ = parts
        seen = families.setdefault(key, [])
        if family not in seen:
            seen.append(family)
    return [
        ChartGroup(
            title=display.tag("", key),
            charts=tuple(
                (family, (re.escape(display.number(key, "", family)),)) for family in chosen
            ),
        )
        for key, chosen in families.items()
    ]
