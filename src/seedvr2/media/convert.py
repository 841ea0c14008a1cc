"""PyAV video frames <-> float RGB(A) arrays, and PyAV colour enums <-> :class:`ColorInfo`.

Planar formats (yuv*p, yuva*p, gbrp*, gray*) are read and written plane by plane with the exact
maths of :mod:`.colorspace`; anything else (nv12, p010, rgb24, pal8, bayer, ...) is first turned
into a planar format of the same depth by swscale, which only reorders or upsamples there.
"""

from __future__ import annotations

import av
import numpy as np
from av.video.reformatter import ColorPrimaries, ColorRange, ColorTrc

from .colorspace import (
    MATRICES,
    quantize,
    rgb_to_ycbcr,
    subsample_chroma,
    to_codes,
    upsample_chroma,
    ycbcr_to_rgb,
)
from .types import ColorInfo

_MATRIX_CODES = {
    "rgb": 0, "bt709": 1, "fcc": 4, "bt470bg": 5, "smpte170m": 6, "smpte240m": 7,
    "ycgco": 8, "bt2020nc": 9, "bt2020c": 10,
}  # fmt: skip
"""FFmpeg AVColorSpace values by name (2 = unspecified)."""
_MATRIX_NAMES = {code: name for name, code in _MATRIX_CODES.items()}
_UNSPECIFIED = 2


def _tag_name(enum: type[ColorPrimaries] | type[ColorTrc], value: int) -> str | None:
    known = {member.value: member.name.lower() for member in enum}
    return None if value == _UNSPECIFIED else known.get(value)


def color_info(tagged: av.VideoFrame | av.video.codeccontext.VideoCodecContext) -> ColorInfo:
    """The colour tags of a frame or a stream's codec context."""
    ranges = {ColorRange.MPEG: "limited", ColorRange.JPEG: "full"}
    return ColorInfo(
        primaries=_tag_name(ColorPrimaries, tagged.color_primaries),
        transfer=_tag_name(ColorTrc, tagged.color_trc),
        matrix=_MATRIX_NAMES.get(tagged.colorspace),
        range=ranges.get(tagged.color_range),
    )


def apply_color_tags(
    tagged: av.VideoFrame | av.video.codeccontext.VideoCodecContext, color: ColorInfo
) -> None:
    """Write complete colour tags (see :meth:`ColorInfo.or_defaults`) onto a frame or encoder."""
    tagged.color_primaries = ColorPrimaries[color.primaries.upper()]
    tagged.color_trc = ColorTrc[color.transfer.upper()]
    tagged.colorspace = _MATRIX_CODES[color.matrix]
    tagged.color_range = ColorRange.JPEG if color.range == "full" else ColorRange.MPEG


def check_color(color: ColorInfo) -> None:
    """Raise ValueError naming the first tag PyAV or the Y'CbCr maths cannot use."""
    if color.primaries and color.primaries.upper() not in ColorPrimaries.__members__:
        raise ValueError(f"unknown colour primaries {color.primaries!r}")
    if color.transfer and color.transfer.upper() not in ColorTrc.__members__:
        raise ValueError(f"unknown transfer {color.transfer!r}")
    if color.matrix and color.matrix not in MATRICES:
        raise ValueError(f"unknown matrix {color.matrix!r}; known: {', '.join(MATRICES)}")


def bit_depth(fmt: av.VideoFormat) -> int:
    """Bits of the deepest component of a pixel format."""
    return max(component.bits for component in fmt.components)


def is_gray(fmt: av.VideoFormat) -> bool:
    """A grey format (gray*, ya*): one colour component, no palette."""
    colour = [component for component in fmt.components if not component.is_alpha]
    return len(colour) == 1 and not (fmt.is_rgb or fmt.has_palette or fmt.is_bayer)


def chroma_of(fmt: av.VideoFormat) -> str | None:
    """Chroma subsampling of a Y'CbCr format as "4:2:0", "4:2:2" or "4:4:4" (4:1:1 and 4:1:0
    count as 4:2:0, 4:4:0 as 4:2:2: no more chroma samples); None for RGB, grey and palette."""
    colour = [component for component in fmt.components if not component.is_alpha]
    if len(colour) < 3 or fmt.is_rgb or fmt.has_palette or fmt.is_bayer:
        return None
    samples = (4 // fmt.chroma_width(4)) * (4 // fmt.chroma_height(4))  # luma per chroma sample
    return {1: "4:4:4", 2: "4:2:2"}.get(samples, "4:2:0")


def _is_planar(fmt: av.VideoFormat, plane_count: int) -> bool:
    """One integer component per plane, stored in the low bits (what the numpy paths read)."""
    components = fmt.components
    return (
        plane_count == len(components)
        and not fmt.has_palette
        and not fmt.is_bayer
        and "msb" not in fmt.name
        and all(component.bits <= 16 for component in components)
    )


def _planar_equivalent(fmt: av.VideoFormat) -> str:
    alpha = fmt.has_palette or any(component.is_alpha for component in fmt.components)
    rgb_like = fmt.is_rgb or fmt.has_palette or fmt.is_bayer
    if rgb_like or not any(component.is_chroma for component in fmt.components):
        name = "gbrap" if alpha else "gbrp"
    else:
        name = "yuva444p" if alpha else "yuv444p"
    return name + ("16le" if bit_depth(fmt) > 8 else "")


def _plane_view(
    frame: av.VideoFrame, index: int, bits: int, per_pixel: int = 1
) -> np.ndarray:  # (ph, pw * per_pixel)
    """Writable view of plane ``index``; ``per_pixel`` values per pixel for packed planes."""
    plane = frame.planes[index]
    dtype = np.dtype("u1" if bits <= 8 else ">u2" if frame.format.is_big_endian else "<u2")
    row = plane.line_size // dtype.itemsize
    rows = np.frombuffer(plane, dtype, count=row * plane.height).reshape(plane.height, row)
    return rows[:, : plane.width * per_pixel]


def _factors(fmt: av.VideoFormat, width: int, height: int) -> tuple[int, int]:
    return -(-width // fmt.chroma_width(width)), -(-height // fmt.chroma_height(height))


def frame_to_array(frame: av.VideoFrame, default_matrix: str) -> np.ndarray:  # (h, w, 3|4)
    """Float32 RGB(A) in [0, 1] of a decoded frame; gray is repeated to 3 channels.

    Args:
        frame: any software video frame.
        default_matrix: Y'CbCr matrix used when the frame is not tagged with one.
    """
    if not _is_planar(frame.format, len(frame.planes)):
        frame = frame.reformat(format=_planar_equivalent(frame.format))
    fmt = frame.format
    components = fmt.components
    bits = components[0].bits
    top = float((1 << bits) - 1)
    planes = [_plane_view(frame, component.plane, bits) for component in components]
    alpha = planes.pop().astype(np.float32) / top if components[-1].is_alpha else None
    if fmt.is_rgb:
        rgb = np.stack(planes, axis=-1).astype(np.float32) / top
    elif len(planes) == 1:
        gray = planes[0].astype(np.float32)
        if frame.color_range == ColorRange.MPEG:
            gray = (gray / (1 << (bits - 8)) - 16) / 219
        else:
            gray = gray / top
        rgb = np.repeat(np.clip(gray, 0, 1)[..., None], 3, axis=-1)
    else:
        full_range = frame.color_range == ColorRange.JPEG or fmt.name.startswith("yuvj")
        matrix = _MATRIX_NAMES.get(frame.colorspace)
        matrix = matrix if matrix in MATRICES else default_matrix
        factor_x, factor_y = _factors(fmt, frame.width, frame.height)
        size = (frame.height, frame.width)
        cb, cr = (upsample_chroma(p, factor_x, factor_y, size, not full_range) for p in planes[1:])
        rgb = ycbcr_to_rgb(planes[0], cb, cr, matrix, full_range, bits)
    if alpha is not None:
        rgb = np.concatenate([rgb, alpha[..., None]], axis=-1)
    return rgb


def with_channels(image: np.ndarray, channels: int) -> np.ndarray:
    """``image`` with its alpha channel dropped or an opaque one added to get ``channels``."""
    if image.shape[-1] == channels:
        return image
    if channels == 3:
        return image[..., :3]
    return np.concatenate([image, np.ones_like(image[..., :1])], axis=-1)


def _gray_alpha_frame(
    image: np.ndarray,  # (h, w, 4) float in [0, 1]
    pix_fmt: str,  # ya8, ya16be or ya16le: luma and alpha interleaved in one plane
    bits: int,
) -> av.VideoFrame:
    height, width = image.shape[:2]
    luma = rgb_to_ycbcr(image, "bt709", True, bits)[0]
    alpha = image[..., 3] * float((1 << bits) - 1)
    codes = np.stack([to_codes(luma, bits), to_codes(alpha, bits)], axis=-1)  # (h, w, 2)
    frame = av.VideoFrame(width, height, pix_fmt)
    _plane_view(frame, 0, bits, per_pixel=2)[...] = codes.reshape(height, 2 * width)
    return frame


def array_to_frame(
    image: np.ndarray,  # (h, w, 3|4) float in [0, 1]
    pix_fmt: str,
    color: ColorInfo,
) -> av.VideoFrame:
    """A frame of ``pix_fmt`` holding ``image``, rounded to nearest, tagged with ``color``.

    Args:
        image: RGB or RGBA; alpha is dropped or set opaque to fit ``pix_fmt``.
        pix_fmt: planar Y'CbCr / RGB / gray formats are filled exactly; packed RGB formats
            (rgb24, rgba64be, bgra, ...) through a lossless swscale reorder.
        color: complete tags; ``color.matrix`` and ``color.range`` drive the Y'CbCr maths.
    """
    height, width = image.shape[:2]
    fmt = av.VideoFormat(pix_fmt)
    components = fmt.components
    has_alpha = components[-1].is_alpha
    image = with_channels(np.asarray(image, np.float32), 4 if has_alpha else 3)
    bits = components[0].bits
    planar = _is_planar(fmt, len({component.plane for component in components}))
    if not planar and is_gray(fmt) and has_alpha:
        return _gray_alpha_frame(image, pix_fmt, bits)
    if not planar:
        if not fmt.is_rgb:
            raise ValueError(f"pixel format {pix_fmt} is neither planar nor RGB")
        depth = 16 if bits > 8 else 8
        source = {(16, True): "rgba64le", (16, False): "rgb48le", (8, True): "rgba"}
        packed = av.VideoFrame.from_ndarray(
            quantize(image, depth), format=source.get((depth, has_alpha), "rgb24")
        )
        return packed.reformat(format=pix_fmt)
    if fmt.is_rgb:
        values = [image[..., i] * float((1 << bits) - 1) for i in range(len(components))]
    elif len(components) - has_alpha == 1:
        values = [rgb_to_ycbcr(image, "bt709", True, bits)[0]]  # gray: full-range luma
    else:
        full_range = color.range == "full" or pix_fmt.startswith("yuvj")
        luma, cb, cr = rgb_to_ycbcr(image, color.matrix, full_range, bits)
        factor_x, factor_y = _factors(fmt, width, height)
        chroma = (subsample_chroma(c, factor_x, factor_y, not full_range) for c in (cb, cr))
        values = [luma, *chroma]
    if has_alpha:
        values = values[: len(components) - 1] + [image[..., 3] * float((1 << bits) - 1)]
    frame = av.VideoFrame(width, height, pix_fmt)
    for component, value in zip(components, values):
        target = _plane_view(frame, component.plane, bits)
        target[...] = to_codes(value, bits).astype(target.dtype)
    if any(component.is_chroma for component in components):
        apply_color_tags(frame, color)
    return frame
