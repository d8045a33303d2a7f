"""Drawing: colour maps, display images, captioned grids; tensors in, ``uint8 [3, H, W]`` images out."""

from .captions import wrap_text
from .colormaps import colorize, colormap_lut, colormap_names
from .display import blend, check_normalization, saliency_to_image, to_display
from .grids import heatmap_grid, history_grid, image_grid, overlay_grid

__all__ = [
    "blend",
    "check_normalization",
    "colorize",
    "colormap_lut",
    "colormap_names",
    "heatmap_grid",
    "history_grid",
    "image_grid",
    "overlay_grid",
    "saliency_to_image",
    "to_display",
    "wrap_text",
]
