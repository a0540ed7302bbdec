"""A user's own picture as a model input: check the bytes, decode, crop to a square, fit channels and size.

Only PNG and JPEG are accepted, recognised by their magic bytes (not by file name). Every refusal is an
`UploadError` whose message says what was received and what is wrong, ready to show to the user.
Transparent pixels are composited over white (the way an image viewer shows them).
"""

from __future__ import annotations

import io

import numpy as np
import torch
from PIL import Image, ImageOps

from .transforms import resize

__all__ = ["UploadError", "image_from_bytes", "sniff_format"]

MAX_BYTES = 5 * 2**20  # 5 MiB
MAX_PIXELS = 40_000_000  # refuse decompression bombs before decoding
ACCEPTED = {b"\x89PNG\r\n\x1a\n": "PNG", b"\xff\xd8\xff": "JPEG"}
OTHERS = {  # magic bytes -> name, to say what was received instead
    b"GIF87a": "GIF image",
    b"GIF89a": "GIF image",
    b"BM": "BMP image",
    b"II*\x00": "TIFF image",
    b"MM\x00*": "TIFF image",
    b"%PDF": "PDF document",
    b"PK\x03\x04": "ZIP archive (or an Office document)",
    b"\x1f\x8b": "gzip archive",
    b"<svg": "SVG drawing",
}


class UploadError(ValueError):
    """An uploaded file that cannot be used as an image; the message is meant for the user."""


def sniff_format(data: bytes) -> str:
    """Name the kind of file ``data`` is: "PNG", "JPEG", or a description of what else it is."""
    for magic, name in {**ACCEPTED, **OTHERS}.items():
        if data.startswith(magic):
            return name
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "WebP image"
    if not data:
        return "an empty file (0 bytes)"
    try:
        text = data[:2048].decode("utf-8")
    except UnicodeDecodeError:
        return f"unrecognised binary data (first bytes {data[:8].hex(' ')})"
    preview = " ".join(text.split())[:40]
    return f"text, not an image (starts {preview!r})"


def image_from_bytes(data: bytes, channels: int, size: int, max_bytes: int = MAX_BYTES) -> torch.Tensor:
    """Decode a PNG or JPEG upload to (channels, size, size) float32 in [0, 1]; raise UploadError otherwise.

    Checks, in order: the type (magic bytes), the size (at most ``max_bytes``), that it decodes. Then the
    image is turned upright (EXIF), centre-cropped to a square and resized (bilinear, antialiased).
    """
    if channels not in (1, 3):
        raise ValueError(f"channels must be 1 (grey) or 3 (RGB), got {channels}")
    kind = sniff_format(data)
    if kind not in ACCEPTED.values():
        raise UploadError(f"Only PNG or JPEG images are accepted; this upload is {kind}.")
    if len(data) > max_bytes:
        raise UploadError(
            f"This {kind} is {len(data) / 2**20:.1f} MB; the limit is {max_bytes / 2**20:.1f} MB. "
            "Please upload a smaller image."
        )
    picture = _centre_square(_decode(data, kind))
    pixels = torch.from_numpy(np.array(picture.convert("L" if channels == 1 else "RGB"), dtype=np.uint8))
    pixels = pixels.unsqueeze(-1) if pixels.ndim == 2 else pixels  # (H, W, C)
    image = pixels.permute(2, 0, 1).float().div_(255.0).unsqueeze(0)  # (1, C, H, W)
    return resize(image, size)[0]


def _decode(data: bytes, kind: str) -> Image.Image:
    """Fully decode ``data`` with PIL, upright, alpha over white; UploadError if it is corrupt or too large."""
    try:
        picture = Image.open(io.BytesIO(data))
        width, height = picture.size
        if width * height > MAX_PIXELS:
            raise UploadError(
                f"This {kind} is {width}x{height} pixels; the limit is {MAX_PIXELS // 10**6} megapixels."
            )
        picture.load()
        picture = ImageOps.exif_transpose(picture)
    except UploadError:
        raise
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as exc:
        raise UploadError(
            f"This file starts like a {kind} but could not be decoded (corrupt or truncated): {exc}"
        ) from exc
    if picture.mode.startswith("I;16") or picture.mode == "I":  # 16-bit grey PNG: scale, do not clip, to 8 bits
        wide = np.asarray(picture, dtype=np.float64)
        picture = Image.fromarray(np.round(wide.clip(0, 65535) / 257.0).astype(np.uint8))
    if picture.mode in ("RGBA", "LA", "PA") or (picture.mode == "P" and "transparency" in picture.info):
        rgba = picture.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        picture = Image.alpha_composite(background, rgba)
    return picture


def _centre_square(picture: Image.Image) -> Image.Image:
    """The largest centred square of ``picture`` (a crop, no resampling)."""
    width, height = picture.size
    side = min(width, height)
    left, top = (width - side) // 2, (height - side) // 2
    return picture.crop((left, top, left + side, top + side))
