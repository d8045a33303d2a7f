"""A synthetic image set of coloured shapes on textured backgrounds, with object masks.

Every sample is drawn on demand from its own random generator, seeded from ``(seed, index)``: the same
index always gives the same image, reading samples in any order (or from several workers) gives the same
data, and the global random state is never touched. The object mask comes with each image, so a CAM can be
scored by how much of its energy falls on the object.

With ``shortcut=True`` a small square in the top-left corner is painted in a colour that encodes the class.
The marker is far easier to learn than the shape itself, so a model trained on such images tends to look at
the corner instead of the object; its CAMs (and its accuracy on images without the marker) show it.
"""

from __future__ import annotations

import colorsys
import hashlib
import math

import cv2
import numpy as np
import torch
from torch import Tensor
from torch.utils.data import Dataset

__all__ = ["SHAPE_NAMES", "ShapesDataset"]

SHAPE_NAMES: tuple[str, ...] = (
    "circle",
    "square",
    "triangle",
    "cross",
    "ring",
    "star",
    "hexagon",
    "crescent",
)
"""The shape of class ``k`` is ``SHAPE_NAMES[k]``; a dataset with ``num_classes=n`` uses the first ``n``."""

_SUBPIXEL_BITS = 4  # cv2 draws with 1/16-pixel vertex precision
_SCALE = 1 << _SUBPIXEL_BITS
_NUM_UNIFORMS = 24  # scalar random draws per sample, taken in one call
_TEXTURE_CONTRAST = 0.3  # largest per-channel difference between the two background colours
_MIN_OBJECT_CONTRAST = 0.5  # wanted RGB distance between the object and both background colours
_RADIUS_RANGE = (0.20, 0.35)  # object circumradius, as a share of the image size
_STRIPES_SHARE = 0.5  # share of backgrounds with stripes (the rest have smooth noise)
_STRIPE_PERIOD = (0.15, 0.40)  # stripe period, as a share of the image size


def _sample_seed(seed: int, index: int) -> int:
    """Derive a 63-bit seed for sample ``index`` of the dataset seeded with ``seed`` (stable across runs)."""
    digest = hashlib.blake2b(f"{seed}:{index}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") & ((1 << 63) - 1)


def _polygon(cx: float, cy: float, radii: list[float], angle: float) -> np.ndarray:
    """Vertices at equal angular steps around ``(cx, cy)``, radius ``radii[k]`` for vertex ``k``."""
    steps = np.arange(len(radii)) * (2 * math.pi / len(radii)) + angle
    r = np.asarray(radii)
    points = np.stack([cx + r * np.cos(steps), cy + r * np.sin(steps)], axis=1)
    return np.round(points * _SCALE).astype(np.int32)


def _cross(cx: float, cy: float, r: float, angle: float) -> np.ndarray:
    w = 0.3 * r  # half the width of an arm
    corners = [
        (r, -w),
        (r, w),
        (w, w),
        (w, r),
        (-w, r),
        (-w, w),
        (-r, w),
        (-r, -w),
        (-w, -w),
        (-w, -r),
        (w, -r),
        (w, -w),
    ]
    c, s = math.cos(angle), math.sin(angle)
    points = np.array([(cx + x * c - y * s, cy + x * s + y * c) for x, y in corners])
    return np.round(points * _SCALE).astype(np.int32)


def _draw_shape(canvas: np.ndarray, name: str, cx: float, cy: float, r: float, angle: float) -> None:
    """Paint shape ``name`` (circumradius ``r``) onto the uint8 alpha ``canvas`` in place, anti-aliased."""
    aa = cv2.LINE_AA
    centre = (round(cx * _SCALE), round(cy * _SCALE))
    if name == "circle":
        cv2.circle(canvas, centre, round(r * _SCALE), 255, -1, aa, _SUBPIXEL_BITS)
    elif name == "ring":
        cv2.circle(canvas, centre, round(r * _SCALE), 255, -1, aa, _SUBPIXEL_BITS)
        cv2.circle(canvas, centre, round(0.55 * r * _SCALE), 0, -1, aa, _SUBPIXEL_BITS)
    elif name == "crescent":
        cv2.circle(canvas, centre, round(r * _SCALE), 255, -1, aa, _SUBPIXEL_BITS)
        off = (
            round((cx + 0.5 * r * math.cos(angle)) * _SCALE),
            round((cy + 0.5 * r * math.sin(angle)) * _SCALE),
        )
        cv2.circle(canvas, off, round(0.85 * r * _SCALE), 0, -1, aa, _SUBPIXEL_BITS)
    else:
        if name == "square":
            points = _polygon(cx, cy, [r] * 4, angle)
        elif name == "triangle":
            points = _polygon(cx, cy, [r] * 3, angle)
        elif name == "hexagon":
            points = _polygon(cx, cy, [r] * 6, angle)
        elif name == "star":
            points = _polygon(cx, cy, [r, 0.45 * r] * 5, angle)
        elif name == "cross":
            points = _cross(cx, cy, r, angle)
        else:  # pragma: no cover - guarded by the constructor
            raise ValueError(f"unknown shape {name!r}")
        cv2.fillPoly(canvas, [points], 255, aa, _SUBPIXEL_BITS)


class ShapesDataset(Dataset):
    """Coloured shapes on smooth-noise or striped backgrounds, generated on the fly.

    Sample ``i`` has class ``i % num_classes`` (so any ``num_classes`` consecutive indices hold one image of
    each class) and shape ``SHAPE_NAMES[label]``, drawn anti-aliased at a random place, angle, colour and
    size (circumradius 20-35 % of the side, always fully inside the image) over a random texture in two
    random colours, plus a little pixel noise. The shape's colour never encodes its class. Everything random
    comes from a ``torch.Generator`` seeded with a hash of ``(seed, i)``. About 1,800 samples per second at
    64x64 on one CPU core.

    Each sample is a dict:

    * ``"image"``: float32 ``[3, H, W]``, normalised with :attr:`MEAN` and :attr:`STD`
      (``(x - MEAN) / STD`` per channel, where ``x`` is RGB in [0, 1]).
    * ``"label"``: int64 scalar tensor, the class index.
    * ``"mask"``: bool ``[H, W]``, True where the object covers at least half of a pixel (the marker is
      never part of it).

    Args:
        length: number of samples.
        image_size: height and width of the square images, at least 16.
        num_classes: number of shape classes, from 2 to ``len(SHAPE_NAMES)`` (8).
        seed: picks the whole dataset; two datasets with the same arguments hold identical samples.
        shortcut: paint a class-coded marker (see :meth:`marker_color`) in the top-left corner of every
            image, over :attr:`marker_box`.
        marker_size: side of the marker in pixels; default ``max(3, round(image_size / 10))``.

    Example:
        >>> ds = ShapesDataset(length=8, image_size=32, num_classes=3)
        >>> sample = ds[4]
        >>> sample["image"].shape, int(sample["label"]), sample["mask"].dtype
        (torch.Size([3, 32, 32]), 1, torch.bool)

    """

    MEAN: tuple[float, float, float] = (0.5, 0.5, 0.5)
    """Per-channel mean used to normalise the RGB images (close to the data's own mean)."""
    STD: tuple[float, float, float] = (0.29, 0.29, 0.29)
    """Per-channel standard deviation used to normalise the RGB images (close to the data's own)."""

    def __init__(
        self,
        length: int = 1000,
        image_size: int = 64,
        num_classes: int = 4,
        seed: int = 0,
        shortcut: bool = False,
        marker_size: int | None = None,
    ) -> None:
        for name, value in (("length", length), ("image_size", image_size), ("num_classes", num_classes)):
            if isinstance(value, bool) or not isinstance(value, int):
                raise TypeError(f"`{name}` must be an int, got {type(value).__name__}")
        if length < 0:
            raise ValueError(f"`length` must be >= 0, got {length}")
        if image_size < 16:
            raise ValueError(f"`image_size` must be >= 16, got {image_size}")
        if not 2 <= num_classes <= len(SHAPE_NAMES):
            raise ValueError(f"`num_classes` must be between 2 and {len(SHAPE_NAMES)}, got {num_classes}")
        if marker_size is None:
            marker_size = max(3, round(image_size / 10))
        if not 1 <= marker_size <= image_size // 4:
            raise ValueError(
                f"`marker_size` must be between 1 and image_size // 4 = {image_size // 4}, got {marker_size}"
            )
        self.length = length
        self.image_size = image_size
        self.num_classes = num_classes
        self.seed = int(seed)
        self.shortcut = bool(shortcut)
        self.marker_size = marker_size
        self._mean = np.asarray(self.MEAN, dtype=np.float32)
        self._std = np.asarray(self.STD, dtype=np.float32)

    @property
    def classes(self) -> list[str]:
        """Class names, index ``k`` for label ``k``."""
        return list(SHAPE_NAMES[: self.num_classes])

    @property
    def marker_box(self) -> tuple[int, int, int, int]:
        """``(top, left, bottom, right)`` of the marker square in pixels, bottom and right exclusive."""
        return (0, 0, self.marker_size, self.marker_size)

    def marker_color(self, label: int) -> tuple[float, float, float]:
        """RGB colour in [0, 1] of the marker for class ``label``: fully saturated, hues evenly spaced."""
        if not 0 <= label < self.num_classes:
            raise ValueError(f"`label` must be in [0, {self.num_classes}), got {label}")
        r, g, b = colorsys.hsv_to_rgb(label / self.num_classes, 1.0, 1.0)
        return (r, g, b)

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, index: int) -> dict[str, Tensor]:
        if index < 0:
            index += self.length
        if not 0 <= index < self.length:
            raise IndexError(f"index {index} out of range for a dataset of {self.length} samples")
        image, label, mask = self.render(index)
        image -= self._mean
        image /= self._std
        return {
            "image": torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1))),
            "label": torch.tensor(label, dtype=torch.long),
            "mask": torch.from_numpy(mask),
        }

    def render(self, index: int) -> tuple[np.ndarray, int, np.ndarray]:
        """Draw sample ``index`` without normalising it.

        Returns:
            ``(image, label, mask)``: float32 RGB ``[H, W, 3]`` in [0, 1], the class index and a bool
            ``[H, W]`` object mask.

        """
        size = self.image_size
        label = index % self.num_classes
        gen = torch.Generator().manual_seed(_sample_seed(self.seed, index))
        u = torch.rand(_NUM_UNIFORMS, generator=gen, dtype=torch.float64).tolist()

        # Background: two random colours mixed by a smooth noise field or by soft stripes.
        low = np.array(u[1:4], dtype=np.float32)
        high = np.clip(low + _TEXTURE_CONTRAST * (2 * np.array(u[4:7], dtype=np.float32) - 1), 0.0, 1.0)
        if u[0] >= _STRIPES_SHARE:
            cells = 3 + int(u[7] * 4)
            field = torch.rand(cells, cells, generator=gen).numpy()
            weight = cv2.resize(field, (size, size), interpolation=cv2.INTER_CUBIC)
            weight = (weight - weight.min()) / max(float(weight.max() - weight.min()), 1e-6)
        else:
            theta = u[7] * math.pi
            period = size * (_STRIPE_PERIOD[0] + (_STRIPE_PERIOD[1] - _STRIPE_PERIOD[0]) * u[8])
            coords = np.arange(size, dtype=np.float32)
            along = coords[None, :] * math.cos(theta) + coords[:, None] * math.sin(theta)
            weight = np.clip(0.5 + 1.5 * np.sin(along * (2 * math.pi / period) + u[9] * 2 * math.pi), 0, 1)
        weight = weight.astype(np.float32)[:, :, None]
        image = low + (high - low) * weight

        # Object colour: the first of a few random candidates that stands out from both background colours.
        candidates = np.array(u[10:19], dtype=np.float32).reshape(3, 3)
        contrast = np.minimum(
            np.linalg.norm(candidates - low, axis=1), np.linalg.norm(candidates - high, axis=1)
        )
        good = np.flatnonzero(contrast >= _MIN_OBJECT_CONTRAST)
        colour = candidates[good[0] if good.size else int(np.argmax(contrast))]

        # Object: circumradius 20-35 % of the image, fully inside it.
        r = size * (_RADIUS_RANGE[0] + (_RADIUS_RANGE[1] - _RADIUS_RANGE[0]) * u[19])
        cx = r + 1 + u[20] * (size - 2 * r - 2)
        cy = r + 1 + u[21] * (size - 2 * r - 2)
        alpha_u8 = np.zeros((size, size), dtype=np.uint8)
        _draw_shape(alpha_u8, SHAPE_NAMES[label], cx, cy, r, u[22] * 2 * math.pi)
        alpha = alpha_u8.astype(np.float32)[:, :, None] / 255.0
        image += (colour - image) * alpha
        mask = alpha_u8 >= 128

        noise = torch.randn(size, size, 3, generator=gen).numpy()
        noise *= 0.03
        image += noise
        np.clip(image, 0.0, 1.0, out=image)

        if self.shortcut:
            top, left, bottom, right = self.marker_box
            image[top:bottom, left:right] = self.marker_color(label)
            mask[top:bottom, left:right] = False
        return image.astype(np.float32, copy=False), label, mask
