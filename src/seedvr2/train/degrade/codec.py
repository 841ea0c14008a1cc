"""Video codec round trip through PyAV/FFmpeg, in memory (RealBasicVSR's video compression).

The whole clip is one stream, so inter-frame artefacts (motion-compensated blocking, smearing)
are real. Frames are padded to even sizes of at least 16 (yuv420p, encoder minimums) by edge
replication and cropped back.

Determinism (a seed must give the same pair): encoders run single-threaded, and on CPUs with
AVX-512 x264's instruction set is capped at AVX2, because its AVX-512 kernels read uninitialised
memory (about 3% of encodes differed between identical calls; none with the cap or without asm;
x264 in the PyAV 18 wheels). libx265 still varies between runs at some small sizes (64×64) even
without asm, so the shipped config leaves it out; mpeg4 and libvpx-vp9 were stable.
"""

from __future__ import annotations

import functools
import io
from pathlib import Path

import av
import numpy as np
import torch
import torch.nn.functional as F
from einops import rearrange

from seedvr2.media.encode import x265_params

from .config import CRF_CODECS

_MIN_SIDE = 16
_X264_UP_TO_AVX2 = "MMX2,SSE,SSE2,SSE2Fast,SSE3,SSSE3,SSE4,SSE4.2,LZCNT,AVX,FMA3,BMI1,BMI2,AVX2"


@functools.cache
def _encoder_options(codec: str, width: int, height: int) -> dict[str, str]:
    """Options making ``codec`` reproducible (module docstring); x265 also stops logging."""
    if codec == "libx265":
        params = x265_params(width, height, "log-level=none", "pools=none", "frame-threads=1")
        return {"x265-params": params}
    if codec != "libx264":
        return {"threads": "1"}
    try:
        avx512 = " avx512f" in Path("/proc/cpuinfo").read_text()
    except OSError:  # not Linux: keep x264's own choice
        avx512 = False
    # every CPU with AVX-512 has the AVX2 set
    return {"threads": "1", **({"x264-params": f"asm={_X264_UP_TO_AVX2}"} if avx512 else {})}


def _encode(frames: np.ndarray, codec: str, options: dict[str, str], fps: int) -> io.BytesIO:
    """Encode ``(f, h, w, 3)`` uint8 RGB frames into an in-memory MP4."""
    buffer = io.BytesIO()
    with av.open(buffer, "w", format="mp4") as container:
        stream = container.add_stream(codec, rate=fps, options=options)
        stream.width, stream.height, stream.pix_fmt = frames.shape[2], frames.shape[1], "yuv420p"
        for frame in frames:
            container.mux(stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
        container.mux(stream.encode(None))
    buffer.seek(0)
    return buffer


def _decode(buffer: io.BytesIO) -> np.ndarray:  # (f, h, w, 3) uint8
    with av.open(buffer, "r") as container:
        return np.stack([f.to_ndarray(format="rgb24") for f in container.decode(video=0)])


def video_compress(
    clip: torch.Tensor,  # (f, 3, h, w) in [0, 1]
    codec: str,
    quality: float,
    fps: int = 25,
) -> torch.Tensor:  # (f, 3, h, w) in [0, 1], 8-bit levels
    """Encode the clip with ``codec`` at constant quality and decode it back.

    ``quality`` is the CRF for libx264/libx265 (0-51) and the fixed quantiser (``qmin = qmax``,
    FFmpeg's ``-q:v``, 2-31) for the other FFmpeg encoders (mpeg4); lower is better for both.
    Constant quality replaces RealBasicVSR's fixed 1e4-1e5 bit/s, which assumed 64² frames at
    1 fps (spec §3 "Porting"); short clips also never let a bit-rate controller settle.
    """
    frames, _, height, width = clip.shape
    pad_h = max(_MIN_SIDE, height + height % 2) - height
    pad_w = max(_MIN_SIDE, width + width % 2) - width
    padded = F.pad(clip.detach().float(), (0, pad_w, 0, pad_h), mode="replicate")
    pixels = torch.round(padded.clamp(0, 1) * 255).to(torch.uint8)
    pixels = rearrange(pixels, "f c h w -> f h w c").cpu().numpy()
    options = dict(_encoder_options(codec, width + pad_w, height + pad_h))
    if codec in CRF_CODECS:
        options["crf"] = f"{quality:.2f}"
    else:
        options["qmin"] = options["qmax"] = str(round(quality))
    decoded = _decode(_encode(pixels, codec, options, fps))
    if decoded.shape[0] != frames:
        raise RuntimeError(f"{codec} returned {decoded.shape[0]} frames for {frames}")
    out = torch.from_numpy(decoded[:, :height, :width]).to(clip.device)
    return rearrange(out, "f h w c -> f c h w").to(clip.dtype) / 255
