from __future__ import annotations

import base64
import io
import random

import pytest
from PIL import Image

from gateway.protocol.images import (
    ImageLimits,
    prepare_image,
    sniff_format,
)
from gateway.protocol.models import ConversionError

LIMITS = ImageLimits()


def encode(image: Image.Image, fmt: str) -> str:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt)
    return base64.b64encode(buffer.getvalue()).decode()


def noisy_png(width: int, height: int) -> str:
    """A PNG that compresses badly, so it is large in bytes as well as in pixels."""
    rng = random.Random(7)
    image = Image.frombytes("RGB", (width, height), rng.randbytes(width * height * 3))
    return encode(image, "PNG")


def test_it_passes_a_small_image_untouched() -> None:
    data = encode(Image.new("RGB", (64, 32), "red"), "PNG")
    prepared = prepare_image(data, "png", limits=LIMITS, field="f")
    assert (prepared.format, prepared.data, prepared.resized) == ("png", data, False)


def test_it_downscales_a_big_png_under_the_limits() -> None:
    data = noisy_png(2400, 1200)
    assert len(data) > LIMITS.max_base64_bytes
    prepared = prepare_image(data, "png", limits=LIMITS, field="f")
    decoded = Image.open(io.BytesIO(base64.b64decode(prepared.data)))
    assert prepared.resized
    assert prepared.format == "jpeg"
    assert decoded.format == "JPEG"
    assert max(decoded.size) <= LIMITS.max_long_side
    assert len(prepared.data) <= LIMITS.max_base64_bytes
    assert decoded.size[0] == 2 * decoded.size[1]


def test_it_downscales_an_image_that_is_only_too_wide() -> None:
    data = encode(Image.new("RGB", (4000, 100), "blue"), "PNG")
    assert len(data) < LIMITS.max_base64_bytes
    prepared = prepare_image(data, "png", limits=LIMITS, field="f")
    decoded = Image.open(io.BytesIO(base64.b64decode(prepared.data)))
    assert decoded.size == (1568, 39)


def test_it_flattens_transparency_onto_white() -> None:
    data = encode(Image.new("RGBA", (3000, 3000), (0, 0, 0, 0)), "PNG")
    prepared = prepare_image(data, "png", limits=LIMITS, field="f")
    decoded = Image.open(io.BytesIO(base64.b64decode(prepared.data))).convert("RGB")
    assert decoded.getpixel((10, 10)) == (255, 255, 255)


def test_it_leaves_big_images_alone_when_resizing_is_off() -> None:
    data = noisy_png(2000, 100)
    prepared = prepare_image(data, "png", limits=ImageLimits(resize=False), field="f")
    assert (prepared.data, prepared.resized) == (data, False)


def test_it_passes_gifs_through() -> None:
    data = encode(Image.new("P", (3000, 200)), "GIF")
    prepared = prepare_image(data, "gif", limits=LIMITS, field="f")
    assert (prepared.format, prepared.data) == ("gif", data)


def test_it_corrects_a_mislabelled_format() -> None:
    data = encode(Image.new("RGB", (8, 8)), "PNG")
    prepared = prepare_image(data, "jpeg", limits=LIMITS, field="f")
    assert (prepared.format, prepared.format_corrected) == ("png", True)


def test_it_refuses_corrupt_base64() -> None:
    with pytest.raises(ConversionError, match=r"^messages\.0\.content\.0\.source\.data: .*base64"):
        prepare_image(
            "not base64!!", "png", limits=LIMITS, field="messages.0.content.0.source.data"
        )


def test_it_refuses_bytes_that_are_no_image() -> None:
    data = base64.b64encode(b"hello world, certainly not a picture").decode()
    with pytest.raises(ConversionError, match="not a PNG"):
        prepare_image(data, "png", limits=LIMITS, field="f")


def test_it_refuses_a_truncated_image_it_has_to_resize() -> None:
    whole = base64.b64decode(noisy_png(2000, 2000))
    data = base64.b64encode(whole[: len(whole) // 2]).decode()
    with pytest.raises(ConversionError, match="could not be decoded"):
        prepare_image(data, "png", limits=LIMITS, field="f")


@pytest.mark.parametrize(
    ("head", "fmt"),
    [
        (b"\x89PNG\r\n\x1a\n....", "png"),
        (b"\xff\xd8\xff\xe0....", "jpeg"),
        (b"GIF89a....", "gif"),
        (b"RIFF\x00\x00\x00\x00WEBPVP8 ", "webp"),
        (b"BM......", None),
    ],
)
def test_it_sniffs_formats(head: bytes, fmt: str | None) -> None:
    assert sniff_format(head) == fmt
