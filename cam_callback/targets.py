"""Target objects for segmentation, detection, multi-label and regression models (public alias).

``from cam_callback.targets import SegmentationTarget``; in YAML ``class_path:
cam_callback.targets.SegmentationTarget``. They live in :mod:`cam_callback.core.task_targets`.
"""

from .core.task_targets import (
    DetectionTarget,
    MultiLabelTarget,
    NoDetectionsError,
    RegressionTarget,
    ScoreTarget,
    SegmentationTarget,
    box_iou,
)

__all__ = [
    "DetectionTarget",
    "MultiLabelTarget",
    "NoDetectionsError",
    "RegressionTarget",
    "ScoreTarget",
    "SegmentationTarget",
    "box_iou",
]
