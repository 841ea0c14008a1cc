"""Baseline JPEG round trip in torch, per frame quality (ITU-T T.81 with the IJG quality scale).

The lossy steps of libjpeg as used by OpenCV/Pillow at their defaults: 8-bit RGB -> full-range
YCbCr (JFIF), 4:2:0 chroma by 2×2 averaging, edge-replicated padding to 16×16 MCUs, level shift,
8×8 orthonormal DCT, quantisation with the Annex K tables scaled by the IJG quality formula,
and back, with libjpeg's "fancy" (triangle) chroma upsampling, which is bilinear interpolation
at half-pixel centres. Entropy coding is lossless and skipped. A torch version (as basicsr's
DiffJPEG) keeps the per-frame quality drift vectorised, runs on the GPU and uses the same 1-100
quality scale as Real-ESRGAN's ``cv2.imencode``, which FFmpeg's mjpeg encoder (``qscale``) lacks.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from einops import rearrange

from .ops import quantize

# ITU-T T.81 Annex K.1 quantisation tables, row-major (luminance, chrominance)
_LUMA_TABLE = (
    16, 11, 10, 16, 24, 40, 51, 61, 12, 12, 14, 19, 26, 58, 60, 55,
    14, 13, 16, 24, 40, 57, 69, 56, 14, 17, 22, 29, 51, 87, 80, 62,
    18, 22, 37, 56, 68, 109, 103, 77, 24, 35, 55, 64, 81, 104, 113, 92,
    49, 64, 78, 87, 103, 121, 120, 101, 72, 92, 95, 98, 112, 100, 103, 99,
)
_CHROMA_TABLE = (17, 18, 24, 47, 99, 99, 99, 99, 18, 21, 26, 66, 99, 99, 99, 99,
                 24, 26, 56, 99, 99, 99, 99, 99, 47, 66, 99, 99, 99, 99, 99, 99) + (99,) * 32

# JFIF full-range conversions
_RGB_TO_YCBCR = ((0.299, 0.587, 0.114), (-0.168736, -0.331264, 0.5), (0.5, -0.418688, -0.081312))
_YCBCR_TO_RGB = ((1.0, 0.0, 1.402), (1.0, -0.344136, -0.714136), (1.0, 1.772, 0.0))


def quality_tables(quality: torch.Tensor) -> torch.Tensor:  # (f,) -> (f, 2, 8, 8)
    """IJG ``jpeg_set_quality``: scale ``5000/q`` below 50, else ``200 - 2q``; entries 1-255."""
    q = quality.round().clamp(1, 100).to(torch.float64)
    scale = torch.where(q < 50, torch.floor(5000 / q), 200 - 2 * q)[:, None, None, None]
    base = torch.tensor((_LUMA_TABLE, _CHROMA_TABLE), dtype=torch.float64).view(1, 2, 8, 8)
    return torch.floor((base * scale + 50) / 100).clamp(1, 255)


def _dct_2d(device: torch.device) -> torch.Tensor:  # (64, 64)
    """The 8×8 orthonormal DCT-II as one matrix on row-major blocks: ``kron(C, C)``."""
    k = torch.arange(8, dtype=torch.float64)
    basis = torch.cos((2 * k[None, :] + 1) * k[:, None] * math.pi / 16) * math.sqrt(2 / 8)
    basis[0] /= math.sqrt(2)
    return torch.kron(basis, basis).to(device, torch.float32)


def _code_plane(plane: torch.Tensor, table: torch.Tensor) -> torch.Tensor:
    """Level shift, DCT, quantise with ``table`` ``(f, 8, 8)``, dequantise, inverse DCT."""
    dct = _dct_2d(plane.device)
    blocks = rearrange(plane - 128, "f (hb i) (wb j) -> f (hb wb) (i j)", i=8, j=8)
    table = rearrange(table.to(plane), "f i j -> f 1 (i j)")
    coefficients = torch.round(blocks @ dct.T / table) * table
    restored = rearrange(coefficients @ dct, "f (hb wb) (i j) -> f (hb i) (wb j)",
                         hb=plane.shape[1] // 8, i=8)
    return restored + 128


def jpeg_compress(clip: torch.Tensor, quality: torch.Tensor) -> torch.Tensor:
    """JPEG-compress frame ``i`` of ``clip`` ``(f, 3, h, w)`` in [0, 1] at ``quality[i]`` (1-100).

    Returns the decoded 8-bit frames in [0, 1], same shape.
    """
    height, width = clip.shape[-2:]
    pixels = quantize(clip.float()) * 255
    pad_h, pad_w = -height % 16, -width % 16
    pixels = F.pad(pixels, (0, pad_w, 0, pad_h), mode="replicate")
    to_ycbcr = pixels.new_tensor(_RGB_TO_YCBCR)
    ycbcr = torch.round(torch.einsum("oc,fchw->fohw", to_ycbcr, pixels))
    ycbcr[:, 1:] += 128
    tables = quality_tables(quality)
    luma = _code_plane(ycbcr[:, 0], tables[:, 0])
    chroma = F.avg_pool2d(ycbcr[:, 1:], 2)  # 4:2:0
    chroma = torch.stack([_code_plane(chroma[:, i], tables[:, 1]) for i in range(2)], dim=1)
    chroma = F.interpolate(chroma.clamp(0, 255), scale_factor=2, mode="bilinear",
                           align_corners=False)
    ycbcr = torch.cat([luma.clamp(0, 255)[:, None], chroma - 128], dim=1)
    rgb = torch.einsum("oc,fchw->fohw", pixels.new_tensor(_YCBCR_TO_RGB), ycbcr)
    out = torch.round(rgb).clamp(0, 255)[:, :, :height, :width] / 255
    return out.to(clip.dtype)
