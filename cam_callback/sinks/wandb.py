"""The Weights & Biases sink: images through a ``WandbLogger``'s ``log_image``.

Written against that one method of Lightning's ``WandbLogger`` (both namespaces), so this module imports
neither Lightning nor ``wandb``: the logger turns the arrays into ``wandb.Image`` and puts them in the run's
history at the logger's own step key (``trainer/global_step``).
"""

from __future__ import annotations

from typing import Any

from torch import Tensor

from ..core.checks import check_choice, check_str
from .base import check_step
from .encoding import IMAGE_FORMATS, check_image

__all__ = ["WandbSink"]


class WandbSink:
    """Log to a ``WandbLogger``: anything with its ``log_image(key, images, step, caption)``.

    Each image goes in as one ``uint8 [H, W, 3]`` array, captioned ``step <step>``; W&B stores it as a PNG
    media file of the run. ``image_format`` is checked, then ignored (W&B encodes the arrays itself).

    Args:
        logger: the ``WandbLogger``.
    """

    def __init__(self, logger: Any) -> None:
        for method in ("log_image",):
            if not callable(getattr(logger, method, None)):
                got = type(logger).__name__
                raise TypeError(f"`logger` must be a WandbLogger (with `{method}`), got {got}")
        self.logger = logger

    def add_image(self, tag: str, image: Tensor, step: int, image_format: str = "png") -> None:
        """Log a ``uint8 [3, H, W]`` RGB image under ``tag`` at ``step``, captioned with the step."""
        check_choice("image_format", image_format, IMAGE_FORMATS)
        step = check_step(step)
        pixels = check_image(image).permute(1, 2, 0).contiguous().numpy()
        self.logger.log_image(key=check_str("tag", tag), images=[pixels], step=step, caption=[f"step {step}"])

    def flush(self) -> None:
        """Nothing to do: the W&B run sends its history in the background."""
