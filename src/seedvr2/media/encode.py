"""Encoder choices: codec table, pixel formats fitted to the source, options, image files.

Pixel formats: unless one is given, each output keeps the source's bit depth, chroma subsampling
and greyness where its codec can hold them (never below the codec's default: ffv1 stays 4:4:4
10-bit, prores 4:2:2 10-bit); what it cannot hold is said once. RGB sources have no Y'CbCr
subsampling to keep and get the codec's default (4:2:0 for h264/h265/vp9, what players expect).

Odd sizes: H.264 and H.265 cannot code 4:2:0 or 4:2:2 pictures of odd width or height (their
cropping works in whole chroma samples). Such pictures are padded by repeating their last column
or row up to whole chroma samples (101x67 -> 102x68 at 4:2:0), and the writer says so; a 4:4:4
format (or ffv1, prores, vp9) keeps the exact size.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from fractions import Fraction
from typing import Literal

import av
import numpy as np

from seedvr2.errors import OutputError

from .convert import array_to_frame, bit_depth, chroma_of
from .types import ColorInfo

logger = logging.getLogger(__name__)

VideoCodec = Literal["h264", "h265", "ffv1", "prores", "vp9", "gif"]


@dataclass(frozen=True)
class CodecSpec:
    """How one user-facing codec name is encoded."""

    encoder: str  # FFmpeg encoder
    pix_fmt: str  # default pixel format
    alpha_pix_fmt: str | None  # default when frames have alpha; None: no alpha support
    crf: int | None  # default constant rate factor; None: the codec has none
    preset: bool = False  # takes an x264/x265 ``preset``
    whole_chroma: bool = False  # the picture size must be whole chroma samples (else padded)
    gray: bool = True  # grey sources get a grey format when the encoder has one


VIDEO_CODECS: dict[str, CodecSpec] = {
    # 18: visually lossless. No grey: few players play 4:0:0 H.264 (FFmpeg decodes it as 4:2:0).
    "h264": CodecSpec("libx264", "yuv420p", None, 18, True, True, gray=False),
    "h265": CodecSpec("libx265", "yuv420p", None, 20, True, True),
    "ffv1": CodecSpec("ffv1", "yuv444p10le", "yuva444p10le", None),  # lossless master
    "prores": CodecSpec("prores_ks", "yuv422p10le", "yuva444p10le", None),  # 422 HQ / 4444
    "vp9": CodecSpec("libvpx-vp9", "yuv420p", "yuva420p", 30),  # WebM; this libvpx is 8-bit
    "gif": CodecSpec("gif", "pal8", "pal8", None),  # 256 colours per frame, on/off alpha
}

X265_SMALL_SIDE = 128  # below this side x265's CU-tree is switched off (see x265_params)
ENCODER_THREADS = 8
"""Threads of every video encoder, fixed: x264's and FFV1's output depends on the thread count,
so a count taken from the machine would give other bytes on another machine."""

VIDEO_FORMATS = {".mp4": "mp4", ".mov": "mov", ".mkv": "matroska", ".webm": "webm", ".gif": "gif"}
"""Video container per output extension."""

IMAGE_ENCODERS = {
    ".png": "png", ".jpg": "mjpeg", ".jpeg": "mjpeg", ".webp": "libwebp",
    ".tif": "tiff", ".tiff": "tiff", ".bmp": "bmp",
}  # fmt: skip

# (alpha, 16-bit, grey) -> pixel format; what a format lacks falls back (see image_pix_fmt).
_IMAGE_PIX_FMTS = {
    "png": {(False, False, False): "rgb24", (True, False, False): "rgba",
            (False, True, False): "rgb48be", (True, True, False): "rgba64be",
            (False, False, True): "gray", (True, False, True): "ya8",
            (False, True, True): "gray16be", (True, True, True): "ya16be"},
    "tiff": {(False, False, False): "rgb24", (True, False, False): "rgba",
             (False, True, False): "rgb48le", (True, True, False): "rgba64le",
             (False, False, True): "gray", (True, False, True): "ya8",
             (False, True, True): "gray16le", (True, True, True): "ya16le"},
    "mjpeg": {(False, False, False): "yuvj444p"},
    "libwebp": {(False, False, False): "bgra", (True, False, False): "bgra"},
    "bmp": {(False, False, False): "bgr24", (True, False, False): "bgra",
            (False, False, True): "gray"},
}  # fmt: skip
_IMAGE_COLOR = ColorInfo("bt709", "iec61966_2_1", "bt470bg", "full")  # JFIF: BT.601, full range

CHROMAS = ("4:2:0", "4:2:2", "4:4:4")
"""Chroma subsamplings kept by outputs, from least to most chroma."""
_CHROMA_NAMES = {"4:2:0": "420p", "4:2:2": "422p", "4:4:4": "444p"}
_DEPTHS = (8, 10, 12, 16)


def _supported(encoder: str) -> list[str]:
    return [fmt.name for fmt in av.codec.Codec(encoder, "w").video_formats or ()]


def check_video_settings(
    codec: str, pix_fmt: str | None, crf: int | None, preset: str | None
) -> None:
    """Raise OutputError for an unknown codec, a pixel format it cannot encode, or a crf/preset
    given to a codec without them."""
    spec = VIDEO_CODECS.get(codec)
    if spec is None:
        raise OutputError(f"unknown codec {codec!r}; choose {', '.join(VIDEO_CODECS)}")
    if pix_fmt is not None and pix_fmt not in _supported(spec.encoder):
        raise OutputError(
            f"pixel format (--pix-fmt) {pix_fmt} is not supported by {codec}; "
            f"choose one of {', '.join(_supported(spec.encoder))}"
        )
    if spec.crf is None and crf is not None:
        with_crf = ", ".join(name for name, other in VIDEO_CODECS.items() if other.crf is not None)
        raise OutputError(f"--crf applies to {with_crf}, not {codec}")
    if not spec.preset and preset is not None:
        with_preset = ", ".join(name for name, other in VIDEO_CODECS.items() if other.preset)
        raise OutputError(f"--preset applies to {with_preset}, not {codec}")


def _ladder(values: tuple, goal: object) -> list:
    """``values`` from ``goal`` upwards, then the ones below it downwards."""
    at = values.index(goal)
    return [*values[at:], *values[:at][::-1]]


def _pix_fmt_name(alpha: bool, chroma: str, depth: int, gray: bool) -> str:
    base = "gray" if gray else ("yuva" if alpha else "yuv") + _CHROMA_NAMES[chroma]
    return base + ("" if depth == 8 else f"{depth}le")


def fit_pix_fmt(
    codec: str, alpha: bool, depth: int, chroma: str | None, gray: bool
) -> tuple[str, list[str]]:
    """The pixel format keeping most of a source, and what it changes (for the user).

    Alpha is kept first, then chroma, then depth (each at least the codec default's), then
    greyness (losing it changes no pixel value).

    Args:
        codec: a :data:`VIDEO_CODECS` name.
        alpha: frames carry alpha.
        depth: bits per component of the source.
        chroma: "4:2:0", "4:2:2" or "4:4:4" of a Y'CbCr source; None: RGB or grey.
        gray: the source is grey.
    """
    spec = VIDEO_CODECS[codec]
    keep_alpha = alpha and spec.alpha_pix_fmt is not None
    default = av.VideoFormat(spec.alpha_pix_fmt if keep_alpha else spec.pix_fmt)
    supported = set(_supported(spec.encoder))
    chosen = default.name
    default_chroma = chroma_of(default)
    if default_chroma is not None:  # a Y'CbCr default: fit depth, chroma and grey
        chroma_goal = max(chroma or default_chroma, default_chroma, key=CHROMAS.index)
        depth_goal = min((d for d in _DEPTHS if d >= max(depth, bit_depth(default))), default=16)
        names = (
            _pix_fmt_name(keep_alpha, each_chroma, each_depth, each_gray)
            for each_chroma in _ladder(CHROMAS, chroma_goal)
            for each_depth in _ladder(_DEPTHS, depth_goal)
            for each_gray in ([True, False] if gray and spec.gray and not keep_alpha else [False])
        )
        chosen = next(name for name in names if name in supported)
    fmt = av.VideoFormat(chosen)
    changes = []
    if bit_depth(fmt) < depth:
        changes.append(f"{depth}-bit frames are written as {bit_depth(fmt)}-bit ({codec} {chosen})")
    kept_chroma = chroma_of(fmt)
    if (
        chroma is not None
        and kept_chroma is not None
        and CHROMAS.index(kept_chroma) < CHROMAS.index(chroma)
    ):
        changes.append(f"{chroma} chroma is written as {kept_chroma} ({codec} {chosen})")
    return chosen, changes


def padded_size(codec: str, pix_fmt: str, width: int, height: int) -> tuple[int, int]:
    """The coded size: ``width`` x ``height`` rounded up to whole chroma samples where needed."""
    fmt = av.VideoFormat(pix_fmt)
    if not VIDEO_CODECS[codec].whole_chroma or chroma_of(fmt) is None:
        return width, height
    step_x, step_y = 2 // fmt.chroma_width(2), 2 // fmt.chroma_height(2)
    return -(-width // step_x) * step_x, -(-height // step_y) * step_y


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
        options["x265-params"] = x265_params(
            width, height, "log-level=error", f"frame-threads={ENCODER_THREADS // 2}"
        )
    elif codec == "prores":
        options |= {"profile": "4444" if "444" in pix_fmt else "hq", "vendor": "apl0"}
    elif codec == "ffv1":
        options |= {"level": "3", "slicecrc": "1"}
    elif codec == "vp9":
        options |= {"b": "0", "row-mt": "1"}  # bit rate 0: constant quality (crf)
    return options | extra


def image_pix_fmt(suffix: str, alpha: bool, depth: int, gray: bool) -> str:
    """The pixel format of an image file keeping alpha, then depth, then grey where it can.

    PNG and TIFF keep all three (16 bits); WebP and BMP keep alpha at 8 bits; JPEG is 8-bit RGB.
    What the format cannot hold is logged (call once per output).
    """
    choices = _IMAGE_PIX_FMTS[IMAGE_ENCODERS[suffix]]
    deep = depth > 8
    keys = (
        (each_alpha, each_deep, each_gray)
        for each_alpha in ([True, False] if alpha else [False])
        for each_deep in ([True, False] if deep else [False])
        for each_gray in ([True, False] if gray else [False])
    )
    pix_fmt = next(choices[key] for key in keys if key in choices)
    fmt = av.VideoFormat(pix_fmt)
    if alpha and not fmt.components[-1].is_alpha:
        logger.warning("%s images cannot hold alpha; it is dropped", suffix)
    if deep and bit_depth(fmt) <= 8:
        logger.warning("%s images are 8-bit; %d-bit frames are written as 8-bit", suffix, depth)
    return pix_fmt


def encode_image(
    image: np.ndarray,  # (h, w, 3|4) float in [0, 1]
    suffix: str,
    pix_fmt: str,
) -> bytes:
    """The bytes of an image file (png, jpg, webp, tiff, bmp) of ``pix_fmt`` holding ``image``."""
    encoder = IMAGE_ENCODERS[suffix]
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
