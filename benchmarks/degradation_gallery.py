"""Degradation gallery: one PNG grid of synthetic LQ clips, one row per seed, and their timings.

Columns: HQ frame 0 | LQ frame 0 | LQ last frame (both nearest-upscaled by the scale, so the
artefacts stay visible) | LQ frame 0 resized back to HQ size (bicubic, the model's input). The HQ
clip pans over a scikit-image photo (a procedural pattern when scikit-image is absent), so the
codec sees motion. The PNG is written with PyAV's png encoder, a declared dependency, so no image
library is needed.

    python benchmarks/degradation_gallery.py --seeds 6 --out outputs/degradation_gallery.png
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import av
import numpy as np
import torch
import torch.nn.functional as F
from einops import rearrange

sys.path.insert(0, str(Path(__file__).parent))
from common import markdown_table  # noqa: E402
from seedvr2.train.degrade import degrade_video, load_degradation_config  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
GAP = 4  # pixels between tiles


def source_image(name: str) -> torch.Tensor:  # (3, h, w) in [0, 1]
    """A scikit-image sample photo, or rings over a colour gradient without scikit-image."""
    try:
        from skimage import data
    except ImportError:
        y, x = torch.meshgrid(torch.linspace(-1, 1, 512), torch.linspace(-1, 1, 512),
                              indexing="ij")
        rings = 0.5 + 0.5 * torch.cos(60 * (x.square() + y.square()))
        return torch.stack([rings, (x + 1) / 2, (y + 1) / 2 * rings])
    return torch.from_numpy(getattr(data, name)()).permute(2, 0, 1).float() / 255


def panning_clip(image: torch.Tensor, frames: int, size: int) -> torch.Tensor:  # (f, 3, s, s)
    """``frames`` crops of ``size``² moving 3 px right and 2 px down per frame."""
    _, height, width = image.shape
    top, left = (height - size - 2 * frames) // 2, (width - size - 3 * frames) // 2
    return torch.stack([image[:, top + 2 * i:top + 2 * i + size, left + 3 * i:left + 3 * i + size]
                        for i in range(frames)])


def write_png(path: Path, image: torch.Tensor) -> None:
    """(3, h, w) in [0, 1] -> 8-bit RGB PNG through FFmpeg's png encoder."""
    pixels = (image.clamp(0, 1) * 255).round().byte().permute(1, 2, 0).contiguous().numpy()
    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), "w", format="image2") as container:
        stream = container.add_stream("png")
        stream.width, stream.height, stream.pix_fmt = pixels.shape[1], pixels.shape[0], "rgb24"
        container.mux(stream.encode(av.VideoFrame.from_ndarray(pixels, format="rgb24")))
        container.mux(stream.encode(None))


def grid(rows: list[list[torch.Tensor]]) -> torch.Tensor:
    """Tiles (3, s, s) in rows, white gaps between them."""
    padded = [[F.pad(tile, (0, GAP, 0, GAP), value=1.0) for tile in row] for row in rows]
    return rearrange(torch.stack([torch.stack(row) for row in padded]),
                     "r k c h w -> c (r h) (k w)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default=str(ROOT / "configs/degradations/realesrgan_video.yaml"))
    parser.add_argument("--image", default="astronaut", help="scikit-image sample name")
    parser.add_argument("--seeds", type=int, default=6)
    parser.add_argument("--frames", type=int, default=8)
    parser.add_argument("--size", type=int, default=256, help="HQ crop side (multiple of scale)")
    parser.add_argument("--out", default=str(ROOT / "outputs/degradation_gallery.png"))
    args = parser.parse_args()

    config = load_degradation_config(args.config)
    clip = panning_clip(source_image(args.image), args.frames, args.size)
    rows, table = [], []
    for seed in range(args.seeds):
        start = time.perf_counter()
        lq = degrade_video(clip, config, torch.Generator().manual_seed(seed))
        seconds = time.perf_counter() - start
        big = F.interpolate(lq, scale_factor=config.scale, mode="nearest")
        back = F.interpolate(lq[:1], size=clip.shape[-2:], mode="bicubic").clamp(0, 1)[0]
        rows.append([clip[0], big[0], big[-1], back])
        psnr = 10 * torch.log10(1 / (back - clip[0]).square().mean())
        table.append([seed, tuple(lq.shape), f"{seconds * 1000:.0f}", f"{psnr:.2f}"])
    write_png(Path(args.out), grid(rows))
    print(markdown_table(["seed", "LQ shape", "ms / clip", "PSNR frame 0 (dB)"], table))
    print(f"\n{args.frames} frames of {args.size}², torch {torch.__version__}, PyAV {av.__version__}"
          f", numpy {np.__version__}; wrote {args.out}")


if __name__ == "__main__":
    main()
