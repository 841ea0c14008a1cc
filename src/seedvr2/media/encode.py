"""Encoder choices: codec table, pixel formats (odd sizes, alpha), options, image files.

Odd sizes: H.264 and H.265 cannot code 4:2:0 or 4:2:2 pictures of odd width or height (their
cropping works in whole chroma samples), so for such sizes those codecs switch to the 4:4:4
format of the same depth (yuv420p -> yuv444p, yuv420p10le -> yuv444p10le); the file then decodes
to exactly the written size. FFV1 and ProRes code odd sizes directly.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from fractions import Fraction
from typing import Literal

import av
import numpy as np

from seedvr2.errors import OutputError

from .convert import array_to_frame, bit_depth
from .types import ColorInfo

logger = logging.getLogger(__name__)

VideoCodec = Literal["h264", "h265", "ffv1", "prores"]


@dataclass(frozen=True)
class CodecSpec:
    """How one user-facing codec name is encoded."""

    encoder: str  # FFmpeg encoder
    pix_fmt: str  # default pixel format
    alpha_pix_fmt: str | None  # default when frames have alpha; None: no alpha support
    crf: int | None  # default constant rate factor; None: the codec has none


VIDEO_CODECS: dict[str, CodecSpec] = {
    "h264": CodecSpec("libx264", "yuv420p", None, 18),  # 18: visually lossless for x264
    "h265": CodecSpec("libx265", "yuv420p", None, 20),
    "ffv1": CodecSpec("ffv1", "yuv444p10le", "yuva444p10le", None),  # lossless master
    "prores": CodecSpec("prores_ks", "yuv422p10le", "yuva444p10le", None),  # 422 HQ / 4444
}

X265_SMALL_SIDE = 128  # below this side x265's CU-tree is switched off (see x265_params)

VIDEO_FORMATS = {".mp4": "mp4", ".mov": "mov", ".mkv": "matroska"}
"""Video container per output extension."""

IMAGE_ENCODERS = {
    ".png": "png", ".jpg": "mjpeg", ".jpeg": "mjpeg", ".webp": "libwebp",
    ".tif": "tiff", ".tiff": "tiff", ".bmp": "bmp",
}  # fmt: skip

# (alpha, 16-bit) -> pixel format; formats without a 16-bit or alpha variant reuse the others.
_IMAGE_PIX_FMTS = {
    "png": {(False, False): "rgb24", (True, False): "rgba", (False, True): "rgb48be",
            (True, True): "rgba64be"},
    "tiff": {(False, False): "rgb24", (True, False): "rgba", (False, True): "rgb48le",
             (True, True): "rgba64le"},
    "mjpeg": {(False, False): "yuvj444p"},
    "libwebp": {(False, False): "bgra", (True, False): "bgra"},
    "bmp": {(False, False): "bgr24", (True, False): "bgra"},
}  # fmt: skip
_IMAGE_COLOR = ColorInfo("bt709", "iec61966_2_1", "bt470bg", "full")  # JFIF: BT.601, full range


def _supported(encoder: str) -> list[str]:
    return [fmt.name for fmt in av.codec.Codec(encoder, "w").video_formats or ()]


def check_video_settings(
    codec: str, pix_fmt: str | None, crf: int | None, preset: str | None
) -> None:
    """Raise OutputError for an unknown codec, a pixel format it cannot encode, or a crf/preset
    given to a codec without them (ffv1, prores)."""
    spec = VIDEO_CODECS.get(codec)
    if spec is None:
        raise OutputError(f"unknown codec {codec!r}; choose {', '.join(VIDEO_CODECS)}")
    if pix_fmt is not None and pix_fmt not in _supported(spec.encoder):
        raise OutputError(
            f"pixel format (--pix-fmt) {pix_fmt} is not supported by {codec}; "
            f"choose one of {', '.join(_supported(spec.encoder))}"
        )
    if spec.crf is None and (crf is not None or preset is not None):
        raise OutputError(f"crf and preset (--crf, --preset) apply to h264 and h265, not {codec}")


def choose_pix_fmt(codec: str, pix_fmt: str | None, alpha: bool, width: int, height: int) -> str:
    """The pixel format to encode with (see the module docstring for odd sizes).

    Raises:
        OutputError: the size is odd and the codec has no 4:4:4 variant of ``pix_fmt``.
    """
    spec = VIDEO_CODECS[codec]
    chosen = pix_fmt or (spec.alpha_pix_fmt if alpha and spec.alpha_pix_fmt else spec.pix_fmt)
    fmt = av.VideoFormat(chosen)
    subsampled = fmt.chroma_width(2) < 2 or fmt.chroma_height(2) < 2
    if codec not in ("h264", "h265") or not subsampled or not (width % 2 or height % 2):
        return chosen
    full = chosen.replace("420p", "444p").replace("422p", "444p")
    if full not in _supported(spec.encoder):
        raise OutputError(
            f"{width}x{height} is odd and {codec} has no 4:4:4 form of {chosen}; "
            "use an even size, another pixel format, or ffv1/prores"
        )
    logger.warning("%dx%d is odd: encoding %s as %s instead of %s", width, height, codec,
                   full, chosen)  # fmt: skip
    return full


def x265_params(width: int, height: int, *params: str) -> str:
    """``x265-params`` for a ``width`` x ``height`` picture: ``params`` plus the small-picture fix.

    The x265 bundled with PyAV corrupts the heap (a later, unrelated ``malloc`` aborts the
    process) on some small pictures, e.g. 32x48, whatever the coding-tree-unit size; its CU-tree
    rate control is the culprit, and small pictures are coded without it (a few percent of bit
    rate, nothing at these sizes).
    """
    small = min(width, height) < X265_SMALL_SIDE
    return ":".join([*params, *(["cutree=0"] if small else [])])


def encoder_options(
    codec: str,
    pix_fmt: str,
    crf: int | None,
    preset: str | None,
    extra: dict[str, str],
    width: int = X265_SMALL_SIDE,
    height: int = X265_SMALL_SIDE,
) -> dict[str, str]:
    """FFmpeg encoder options; ``extra`` (pass-through ``key=value``) wins."""
    spec = VIDEO_CODECS[codec]
    options: dict[str, str] = {}
    if spec.crf is not None:
        options["crf"] = str(spec.crf if crf is None else crf)
        if preset is not None:
            options["preset"] = preset
    if codec == "h265":
        options["x265-params"] = x265_params(width, height, "log-level=error")
    elif codec == "prores":
        options |= {"profile": "4444" if "444" in pix_fmt else "hq", "vendor": "apl0"}
    elif codec == "ffv1":
        options |= {"level": "3", "slicecrc": "1"}
    return options | extra


def encode_image(
    image: np.ndarray,  # (h, w, 3|4) float in [0, 1]
    suffix: str,
    depth: int,
) -> bytes:
    """The bytes of an image file (png, jpg, webp, tiff, bmp) holding ``image``.

    PNG and TIFF keep alpha and 16 bits; WebP and BMP keep alpha at 8 bits; JPEG is 8-bit RGB.
    """
    encoder = IMAGE_ENCODERS[suffix]
    choices = _IMAGE_PIX_FMTS[encoder]
    alpha, deep = image.shape[-1] == 4, depth > 8
    pix_fmt = choices.get((alpha, deep)) or choices.get((alpha, False)) or choices[(False, False)]
    fmt = av.VideoFormat(pix_fmt)
    if alpha and not fmt.components[-1].is_alpha:
        logger.warning("%s images cannot hold alpha; it is dropped", suffix)
    if deep and bit_depth(fmt) <= 8:
        logger.warning("%s images are 8-bit; %d-bit output is not possible", suffix, depth)
    height, width = image.shape[:2]
    context = av.CodecContext.create(encoder, "w")
    context.width, context.height, context.pix_fmt = width, height, pix_fmt
    context.time_base = Fraction(1, 25)
    if encoder == "mjpeg":
        context.qmin = context.qmax = 2  # ~ quality 95
    elif encoder == "libwebp":
        context.options = {"quality": "95"}
    frame = array_to_frame(image, pix_fmt, _IMAGE_COLOR)
    packets = context.encode(frame) + context.encode(None)
    return b"".join(bytes(packet) for packet in packets)
