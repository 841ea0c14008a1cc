"""Classical up-scalers compared with the model in every benchmark table.

* ``bicubic``: bicubic interpolation (PyTorch, ``align_corners=False``), clipped to [0, 1].
* ``lanczos_unsharp``: OpenCV Lanczos-4 interpolation followed by an unsharp mask
  ``y + amount * (y - gaussian(y, sigma))`` (amount 0.5, sigma 1.0 output pixels), clipped.

Both map (f, h, w, 3) float32 frames in [0, 1] to (f, h * scale, w * scale, 3).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
import torch.nn.functional as F
from einops import rearrange

from seedvr2.errors import InputError

Upscaler = Callable[[np.ndarray, int], np.ndarray]  # (lq (f, h, w, 3), scale) -> (f, H, W, 3)

UNSHARP_AMOUNT = 0.5
UNSHARP_SIGMA = 1.0


def bicubic(lq: np.ndarray, scale: int) -> np.ndarray:
    """Bicubic up-scaling by ``scale``."""
    x = rearrange(torch.from_numpy(np.ascontiguousarray(lq)), "f h w c -> f c h w")
    up = F.interpolate(x, scale_factor=scale, mode="bicubic", align_corners=False)
    return rearrange(up.clamp(0, 1), "f c h w -> f h w c").numpy().astype(np.float32)


def lanczos_unsharp(lq: np.ndarray, scale: int) -> np.ndarray:
    """Lanczos-4 up-scaling by ``scale``, then an unsharp mask."""
    try:
        import cv2
    except ImportError as err:
        raise InputError("the lanczos_unsharp baseline needs OpenCV: pip install 'seedvr2[eval]'"
                         ) from err
    size = (lq.shape[2] * scale, lq.shape[1] * scale)  # cv2: (width, height)
    out = []
    for frame in lq:
        up = cv2.resize(frame, size, interpolation=cv2.INTER_LANCZOS4)
        soft = cv2.GaussianBlur(up, (0, 0), UNSHARP_SIGMA)
        out.append(np.clip(up + UNSHARP_AMOUNT * (up - soft), 0, 1))
    return np.stack(out).astype(np.float32)


BASELINES: dict[str, Upscaler] = {"bicubic": bicubic, "lanczos_unsharp": lanczos_unsharp}
