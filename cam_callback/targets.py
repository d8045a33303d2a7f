"""Target objects: what to explain when a model's output is not ``[B, classes]`` logits (the public door).

``from cam_callback.targets import SegmentationTarget``; in YAML ``class_path:
cam_callback.targets.SegmentationTarget``. Subclass :class:`ScoreTarget` for your own. Every target form and
its one validator live in :mod:`cam_callback.core.targets`.
"""

from .core.targets import DetectionTarget as DetectionTarget
from .core.targets import FinerTarget as FinerTarget
from .core.targets import MultiLabelTarget as MultiLabelTarget
from .core.targets import NoDetectionsError as NoDetectionsError
from .core.targets import RegressionTarget as RegressionTarget
from .core.targets import ScoreTarget as ScoreTarget
from .core.targets import SegmentationTarget as SegmentationTarget
from .core.targets import box_iou as box_iou
