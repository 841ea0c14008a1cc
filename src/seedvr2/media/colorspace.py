"""R'G'B' <-> Y'CbCr, chroma resampling and float -> integer rounding, in numpy.

The media layer converts between float RGB and the encoder's Y'CbCr planes itself rather than
through swscale: FFmpeg 8's swscale maps limited-range white to 65280/65535 instead of 65535 when
it converts to or from 16-bit RGB (a 255/256 scale), up to 4 code values off at 10 bits. These
are the exact equations of ITU-T H.273 (section 8.3, matrix coefficients in table 4).

Chroma siting follows the MPEG default for video (horizontally co-sited with the even luma
column, vertically between rows) and JPEG's centred siting for full-range images.
"""

from __future__ import annotations

import numpy as np

MATRICES: dict[str, tuple[float, float]] = {
    "bt709": (0.2126, 0.0722),
    "fcc": (0.30, 0.11),
    "bt470bg": (0.299, 0.114),
    "smpte170m": (0.299, 0.114),
    "smpte240m": (0.212, 0.087),
    "bt2020nc": (0.2627, 0.0593),
    "bt2020c": (0.2627, 0.0593),  # constant luminance, handled as non-constant (approximation)
}
"""(Kr, Kb) luma weights per FFmpeg matrix name; Kg = 1 - Kr - Kb."""


def to_codes(values: np.ndarray, bits: int) -> np.ndarray:
    """Round code values (already scaled to 0..2**bits-1) half up and clip; uint8 or uint16."""
    top = (1 << bits) - 1
    codes = np.clip(np.floor(values + 0.5), 0, top)
    return codes.astype(np.uint8 if bits <= 8 else np.uint16)


def quantize(image: np.ndarray, bits: int) -> np.ndarray:
    """Float [0, 1] to integers of ``bits`` bits, rounding to nearest (0.5/255 -> 1), not truncating."""
    return to_codes(np.asarray(image, np.float32) * np.float32((1 << bits) - 1), bits)


def rgb_to_ycbcr(
    rgb: np.ndarray,  # (h, w, 3) float in [0, 1]
    matrix: str,
    full_range: bool,
    bits: int,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:  # 3 x (h, w) float code values
    """Y', Cb, Cr planes at full resolution, in (unrounded) code values of ``bits`` bits."""
    kr, kb = MATRICES[matrix]
    red, green, blue = (np.asarray(rgb[..., i], np.float32) for i in range(3))
    luma = kr * red + (1 - kr - kb) * green + kb * blue
    cb = (blue - luma) / (2 * (1 - kb))
    cr = (red - luma) / (2 * (1 - kr))
    if full_range:
        top, mid = (1 << bits) - 1, 1 << (bits - 1)
        return luma * top, cb * top + mid, cr * top + mid
    scale = 1 << (bits - 8)
    return (16 + 219 * luma) * scale, (128 + 224 * cb) * scale, (128 + 224 * cr) * scale


def ycbcr_to_rgb(
    luma: np.ndarray,  # (h, w) code values
    cb: np.ndarray,  # (h, w) code values, already upsampled
    cr: np.ndarray,  # (h, w)
    matrix: str,
    full_range: bool,
    bits: int,
) -> np.ndarray:  # (h, w, 3) float32 in [0, 1]
    """Inverse of :func:`rgb_to_ycbcr`, clipped to [0, 1]."""
    kr, kb = MATRICES[matrix]
    luma, cb, cr = (np.asarray(p, np.float32) for p in (luma, cb, cr))
    if full_range:
        top, mid = (1 << bits) - 1, 1 << (bits - 1)
        y, u, v = luma / top, (cb - mid) / top, (cr - mid) / top
    else:
        scale = 1 << (bits - 8)
        y, u, v = (luma / scale - 16) / 219, (cb / scale - 128) / 224, (cr / scale - 128) / 224
    red = y + 2 * (1 - kr) * v
    blue = y + 2 * (1 - kb) * u
    green = (y - kr * red - kb * blue) / (1 - kr - kb)
    return np.clip(np.stack([red, green, blue], axis=-1), 0, 1)


def _halve(a: np.ndarray, cosited: bool) -> np.ndarray:  # (n, ...) -> (ceil(n/2), ...)
    padded = np.concatenate([a[:1], a, a[-1:]])  # edge-replicated: padded[i + 1] == a[i]
    if cosited:  # (1, 2, 1) / 4 centred on the even samples
        count = (a.shape[0] + 1) // 2
        centre = padded[1 : 2 * count : 2]
        return (padded[0 : 2 * count - 1 : 2] + 2 * centre + padded[2 : 2 * count + 1 : 2]) / 4
    pairs = padded[1:-1] if a.shape[0] % 2 == 0 else padded[1:]
    return (pairs[0::2] + pairs[1::2]) / 2


def _double(c: np.ndarray, size: int, cosited: bool) -> np.ndarray:  # (m, ...) -> (size, ...)
    padded = np.concatenate([c[:1], c, c[-1:]])
    out = np.empty((2 * c.shape[0],) + c.shape[1:], np.float32)
    if cosited:  # samples sit on even positions; odd positions interpolate
        out[0::2] = c
        out[1::2] = (c + padded[2:]) / 2
    else:  # samples sit between positions 2k and 2k+1
        out[0::2] = 0.75 * c + 0.25 * padded[:-2]
        out[1::2] = 0.75 * c + 0.25 * padded[2:]
    return out[:size]


def subsample_chroma(
    plane: np.ndarray,  # (h, w) float
    factor_x: int,
    factor_y: int,
    cosited_x: bool,
) -> np.ndarray:  # (ceil(h / factor_y), ceil(w / factor_x))
    """Low-pass and decimate a chroma plane by 1 or 2 along each axis."""
    if factor_y == 2:
        plane = _halve(plane, cosited=False)
    if factor_x == 2:
        plane = _halve(plane.T, cosited_x).T
    return plane


def upsample_chroma(
    plane: np.ndarray,  # (ch, cw)
    factor_x: int,
    factor_y: int,
    size: tuple[int, int],  # (h, w) of the luma plane
    cosited_x: bool,
) -> np.ndarray:  # (h, w) float32
    """Linear interpolation of a subsampled chroma plane back to luma size."""
    plane = np.asarray(plane, np.float32)
    if factor_y == 2:
        plane = _double(plane, size[0], cosited=False)
    if factor_x == 2:
        plane = _double(plane.T, size[1], cosited_x).T
    return plane
