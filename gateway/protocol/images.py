"""Validate, sniff and downscale inline images for Kiro (spec kiro-protocol §2.9, §3.14).

Everything happens in memory with Pillow. Resizing is CPU work of tens of milliseconds for
a big screenshot, so callers on the event loop should run the conversion in a thread.
"""

from __future__ import annotations

import base64
import binascii
import io
import math
import re
import warnings
from dataclasses import dataclass
from typing import Literal

from PIL import Image, ImageOps

from gateway.protocol.models import ConversionError

ImageFormat = Literal["jpeg", "png", "gif", "webp"]

# spec 3.14: exactly these media types; anything else (even `image/jpg`) is dropped.
MEDIA_TYPE_FORMATS: dict[str, ImageFormat] = {
    "image/jpeg": "jpeg",
    "image/png": "png",
    "image/gif": "gif",
    "image/webp": "webp",
}

_JPEG_QUALITY_STEP = 10
_JPEG_QUALITY_FLOOR = 35
_SHRINK_FACTOR = 0.8
_LONG_SIDE_FLOOR = 256
_WHITESPACE = re.compile(r"\s+")


@dataclass(frozen=True, slots=True)
class ImageLimits:
    """Z's resize knobs (spec 3.14); the defaults are Z's defaults."""

    resize: bool = True
    max_long_side: int = 1568
    max_base64_bytes: int = 400_000
    jpeg_quality: int = 85


@dataclass(frozen=True, slots=True)
class PreparedImage:
    """An image ready for `{"format": …, "source": {"bytes": …}}`."""

    format: ImageFormat
    data: str
    resized: bool = False
    format_corrected: bool = False

    def to_kiro(self) -> dict[str, object]:
        """Render the §2.9 image object."""
        return {"format": self.format, "source": {"bytes": self.data}}


def format_for_media_type(media_type: object) -> ImageFormat | None:
    """Map an Anthropic `media_type` to a Kiro image format, or None when unsupported."""
    if not isinstance(media_type, str):
        return None
    return MEDIA_TYPE_FORMATS.get(media_type)


def sniff_format(raw: bytes) -> ImageFormat | None:
    """Recognise PNG, JPEG, GIF and WebP by their magic bytes."""
    if raw.startswith(b"\x89PNG\r\n\x1a\n"):
        return "png"
    if raw.startswith(b"\xff\xd8\xff"):
        return "jpeg"
    if raw.startswith((b"GIF87a", b"GIF89a")):
        return "gif"
    if len(raw) >= 12 and raw[:4] == b"RIFF" and raw[8:12] == b"WEBP":
        return "webp"
    return None


def base64_length(byte_count: int) -> int:
    """Return the length of the padded base64 text of `byte_count` bytes."""
    return 4 * math.ceil(byte_count / 3)


def prepare_image(
    data: object, declared: ImageFormat, *, limits: ImageLimits, field: str
) -> PreparedImage:
    """Decode, check and, when it is over the limits, shrink one base64 image.

    Z keeps undecodable data and lets the upstream fail; the real Anthropic API answers
    400 for such images, so we do the same here, naming the field.
    """
    if not isinstance(data, str) or not data:
        raise ConversionError(field, "image data must be a non-empty base64 string")
    cleaned = _WHITESPACE.sub("", data)
    try:
        raw = base64.b64decode(cleaned, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise ConversionError(field, "image data is not valid base64") from exc
    sniffed = sniff_format(raw)
    if sniffed is None:
        raise ConversionError(field, "image data is not a PNG, JPEG, GIF or WebP image")
    # spec 3.14 (Z): the magic bytes win over the declared media type.
    corrected = sniffed != declared
    if not limits.resize or sniffed == "gif":
        # spec 3.14 (Z): GIFs always pass through (re-encoding would drop the animation).
        return PreparedImage(sniffed, cleaned, format_corrected=corrected)

    image = _open(raw, field)
    long_side = max(image.size)
    if len(cleaned) <= limits.max_base64_bytes and long_side <= limits.max_long_side:
        return PreparedImage(sniffed, cleaned, format_corrected=corrected)
    encoded = _shrink(image, limits, field)
    return PreparedImage("jpeg", base64.b64encode(encoded).decode("ascii"), resized=True)


def _open(raw: bytes, field: str) -> Image.Image:
    """Open image bytes lazily (header only), mapping Pillow failures to ConversionError."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            return Image.open(io.BytesIO(raw))
    except (OSError, ValueError, Image.DecompressionBombWarning) as exc:
        raise ConversionError(field, "image data could not be decoded") from exc
    except Image.DecompressionBombError as exc:
        raise ConversionError(field, "image has too many pixels to process") from exc


def _shrink(image: Image.Image, limits: ImageLimits, field: str) -> bytes:
    """Re-encode as JPEG, lowering quality and then size until the base64 fits (spec 3.14)."""
    target = min(max(image.size), limits.max_long_side)
    if image.format == "JPEG":
        # Let libjpeg decode at a reduced scale: far cheaper for huge photos.
        image.draft("RGB", _fit(image.size, target))
    try:
        image.load()
        frame = ImageOps.exif_transpose(image)
    except (OSError, ValueError, SyntaxError) as exc:
        raise ConversionError(field, "image data could not be decoded") from exc
    rgb = _flatten(frame)
    long_side = target
    best = b""
    while True:
        resized = rgb.resize(_fit(rgb.size, long_side), Image.Resampling.LANCZOS)
        quality = limits.jpeg_quality
        while True:
            best = _encode_jpeg(resized, quality)
            if base64_length(len(best)) <= limits.max_base64_bytes:
                return best
            if quality - _JPEG_QUALITY_STEP < _JPEG_QUALITY_FLOOR:
                break
            quality -= _JPEG_QUALITY_STEP
        smaller = int(long_side * _SHRINK_FACTOR)
        if smaller < _LONG_SIDE_FLOOR:
            return best  # the floor is reached; send the smallest we made
        long_side = smaller


def _fit(size: tuple[int, int], long_side: int) -> tuple[int, int]:
    """Scale (w, h) so that the longer side is `long_side`, never upscaling."""
    width, height = size
    scale = min(1.0, long_side / max(width, height))
    return max(1, round(width * scale)), max(1, round(height * scale))


def _flatten(image: Image.Image) -> Image.Image:
    """Convert to RGB, compositing any transparency onto white (JPEG has no alpha)."""
    if image.mode in ("RGBA", "LA") or (image.mode == "P" and "transparency" in image.info):
        rgba = image.convert("RGBA")
        background = Image.new("RGB", rgba.size, (255, 255, 255))
        background.paste(rgba, mask=rgba.getchannel("A"))
        return background
    return image.convert("RGB")


def _encode_jpeg(image: Image.Image, quality: int) -> bytes:
    """Encode one JPEG in memory."""
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=quality, optimize=True)
    return buffer.getvalue()
