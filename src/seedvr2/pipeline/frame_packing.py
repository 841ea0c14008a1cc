"""Lossless, compact storage of 16-bit frames: delta prediction, byte planes, then zlib.

Restored frames are smooth, so the gradient prediction from the left and upper neighbours leaves
small residuals; split into high and low bytes they deflate to a quarter (smooth footage) to two
thirds (fine texture) of the raw size, and zlib's checksum turns a damaged file into an error.
(FFmpeg's PNG encoder, the obvious alternative, leaves CPU state behind that changes the bytes
x264 produces afterwards in the same process, which would break "same command, same output
bytes" between a fresh and a resumed render.)
"""

from __future__ import annotations

import zlib

import numpy as np


def pack_codes(codes: np.ndarray) -> bytes:  # (H, W, c) uint16
    """``codes`` compressed without loss."""
    delta = codes.copy()
    delta[:, 1:] -= codes[:, :-1]  # left neighbour, modulo 2**16
    delta[1:] -= delta[:-1].copy()  # then the upper one
    planes = np.stack([delta >> 8, delta & 0xFF]).astype(np.uint8)  # (2, H, W, c)
    return zlib.compress(planes.tobytes(), 1)


def unpack_codes(data: bytes, shape: tuple[int, int, int]) -> np.ndarray:  # -> (H, W, c) uint16
    """The codes :func:`pack_codes` stored, of ``shape``.

    Raises:
        ValueError: damaged data, or data of another size.
    """
    try:
        raw = zlib.decompress(data)
    except zlib.error as error:
        raise ValueError(f"damaged frame data ({error})") from None
    if len(raw) != 2 * int(np.prod(shape)):
        raise ValueError(f"frame data of {len(raw)} bytes does not hold {shape} 16-bit codes")
    planes = np.frombuffer(raw, np.uint8).reshape(2, *shape).astype(np.uint16)
    delta = (planes[0] << 8) | planes[1]
    return np.cumsum(np.cumsum(delta, 0, dtype=np.uint16), 1, dtype=np.uint16)
