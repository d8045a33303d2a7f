"""Drawing: colour maps, display images, captioned grids and their encoding; tensors in, ``uint8`` out."""

from .captions import wrap_text
from .colormaps import colorize, colormap_lut, colormap_names
from .display import blend, check_normalization, saliency_to_image, to_display
from .encoding import IMAGE_FORMATS, JPEG_QUALITY, encode_image, encode_jpeg, encode_png
from .grids import heatmap_grid, history_grid, image_grid, overlay_grid

__all__ = [
    "IMAGE_FORMATS",
    "JPEG_QUALITY",
    "blend",
    "check_normalization",
    "colorize",
    "colormap_lut",
    "colormap_names",
    "encode_image",
    "encode_jpeg",
    "encode_png",
    "heatmap_grid",
    "history_grid",
    "image_grid",
    "overlay_grid",
    "saliency_to_image",
    "to_display",
    "wrap_text",
]
