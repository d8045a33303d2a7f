"""The MLflow sink: images with ``MlflowClient.log_image``.

Written against that method of the client (what Lightning's ``MLFlowLogger.experiment`` is), so this module
imports neither Lightning nor MLflow. Images become artifacts of the run through MLflow itself, under its
``images/`` folder with their tag and step, so nothing is written into the tracking store's folders by hand.
"""

from __future__ import annotations

import re
from typing import Any

from torch import Tensor

from ..core.checks import check_choice, check_str
from .base import check_step
from .encoding import IMAGE_FORMATS, check_image

__all__ = ["MlflowSink", "mlflow_key"]


def mlflow_key(tag: str) -> str:
    """``tag`` with each character MLflow refuses in a key (anything but letters, digits, ``_-. /``) as ``_``.

    ``"cam/layer4/gradcam++"`` becomes ``"cam/layer4/gradcam__"``, distinct from ``gradcam``'s key.
    """
    return re.sub(r"[^A-Za-z0-9_\-. /]", "_", check_str("tag", tag))


class MlflowSink:
    """Log to one run of an ``mlflow.MlflowClient``.

    Images go through ``client.log_image(run_id, array, key=key, step=step)`` (MLflow 2.12 or later), which
    stores each as a PNG artifact that MLflow's image view steps through; ``image_format`` is checked, then
    ignored.

    Args:
        client: the ``MlflowClient`` (``MLFlowLogger.experiment``).
        run_id: the run to log to (``MLFlowLogger.run_id``).
    """

    def __init__(self, client: Any, run_id: str) -> None:
        for method in ("log_image",):
            if not callable(getattr(client, method, None)):
                got = type(client).__name__
                raise TypeError(f"`client` must be an MlflowClient (with `{method}`), got {got}")
        self.client = client
        self.run_id = check_str("run_id", run_id)

    def add_image(self, tag: str, image: Tensor, step: int, image_format: str = "png") -> None:
        """Log a ``uint8 [3, H, W]`` RGB image as an image artifact, key :func:`mlflow_key`, at ``step``."""
        check_choice("image_format", image_format, IMAGE_FORMATS)
        pixels = check_image(image).permute(1, 2, 0).contiguous().numpy()
        self.client.log_image(self.run_id, pixels, key=mlflow_key(tag), step=check_step(step))

    def flush(self) -> None:
        """Nothing to do: the client writes each call through."""
