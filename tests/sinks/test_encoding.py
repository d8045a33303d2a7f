"""Encoding the drawn images: lossless PNG, JPEG at the stated quality, RGB kept, wrong images refused."""

from __future__ import annotations

import re

import cv2
import numpy as np
import pytest
import torch

from cam_callback.sinks.encoding import (
    IMAGE_FORMATS,
    JPEG_QUALITY,
    check_image,
    encode_image,
    encode_jpeg,
    encode_png,
)


def decode_rgb(data: bytes) -> np.ndarray:
    """``[H, W, 3]`` RGB uint8 pixels of encoded bytes, decoded by OpenCV."""
    bgr = cv2.imdecode(np.frombuffer(data, dtype=np.uint8), cv2.IMREAD_COLOR)
    assert bgr is not None, "not a decodable image"
    rgb: np.ndarray = bgr[:, :, ::-1]
    return rgb


def ramp(height: int = 40, width: int = 64) -> torch.Tensor:
    """A smooth picture (JPEG's home ground): red rises left to right, green top to bottom, blue constant."""
    xs = torch.linspace(0, 255, width).round().to(torch.uint8)
    ys = torch.linspace(0, 255, height).round().to(torch.uint8)
    return torch.stack(
        [xs.expand(height, width), ys[:, None].expand(height, width), torch.full((height, width), 100)]
    ).to(torch.uint8)


def test_png_is_lossless_and_keeps_rgb_order():
    noise = torch.randint(0, 256, (3, 5, 7), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    data = encode_png(noise)
    assert data.startswith(b"\x89PNG\r\n\x1a\n")
    assert (decode_rgb(data) == noise.permute(1, 2, 0).numpy()).all()
    red = torch.zeros(3, 2, 2, dtype=torch.uint8)
    red[0] = 255
    assert decode_rgb(encode_png(red))[0, 0].tolist() == [255, 0, 0]  # not swapped into blue
    assert encode_image(noise, "png") == data


def test_png_compression_level_changes_the_bytes_not_the_pixels():
    image = ramp()
    stored, packed = encode_png(image, compression=0), encode_png(image, compression=9)
    assert len(stored) > 3 * 40 * 64 > len(packed)  # level 0 stores every byte; level 9 packs the ramp
    assert (decode_rgb(stored) == decode_rgb(packed)).all()
    assert (decode_rgb(packed) == image.permute(1, 2, 0).numpy()).all()


def test_jpeg_at_quality_90_decodes_close_to_a_smooth_image():
    image = ramp()
    data = encode_jpeg(image)
    assert JPEG_QUALITY == 90
    assert data.startswith(b"\xff\xd8\xff")  # the JPEG start-of-image marker
    bgr = np.ascontiguousarray(image.permute(1, 2, 0).numpy()[:, :, ::-1])
    ok, reference = cv2.imencode(".jpg", bgr, [cv2.IMWRITE_JPEG_QUALITY, 90])
    assert ok and data == reference.tobytes()  # OpenCV at quality 90, given BGR
    error = np.abs(decode_rgb(data).astype(int) - image.permute(1, 2, 0).numpy().astype(int))
    assert error.mean() < 2 and error.max() <= 8
    assert encode_image(image, "jpeg") == data
    assert len(encode_jpeg(image, quality=20)) < len(data)


def test_images_on_another_dtype_shape_or_type_are_refused():
    with pytest.raises(TypeError, match=r"^`image` must be a torch\.Tensor, got ndarray$"):
        check_image(np.zeros((3, 2, 2), dtype=np.uint8))  # type: ignore[arg-type]
    message = r"^`image` must be uint8 \(see cam_callback\.render\), got torch\.float32$"
    with pytest.raises(TypeError, match=message):
        check_image(torch.zeros(3, 2, 2))
    for shape in [(4, 2, 2), (2, 2), (1, 3, 2, 2)]:
        message = rf"^`image` must be \[3, H, W\] RGB, got shape {re.escape(str(shape))}$"
        with pytest.raises(ValueError, match=message):
            check_image(torch.zeros(shape, dtype=torch.uint8))
    with pytest.raises(TypeError, match="must be uint8"):
        encode_png(torch.zeros(3, 2, 2))
    with pytest.raises(ValueError, match=r"\[3, H, W\] RGB"):
        encode_jpeg(torch.zeros(1, 2, 2, dtype=torch.uint8))


def test_a_valid_image_comes_back_detached_on_the_cpu():
    image = torch.arange(12, dtype=torch.uint8).reshape(3, 2, 2)
    checked = check_image(image)
    assert checked.device.type == "cpu" and torch.equal(checked, image)


def test_only_png_and_jpeg():
    assert IMAGE_FORMATS == ("png", "jpeg")
    image = torch.zeros(3, 2, 2, dtype=torch.uint8)
    with pytest.raises(ValueError, match=r"^`image_format`: unknown 'gif'; valid: 'png', 'jpeg'$"):
        encode_image(image, "gif")
    with pytest.raises(ValueError, match=r"unknown 'jpg' \(did you mean 'jpeg'\?\); valid: 'png', 'jpeg'"):
        encode_image(image, "jpg")
