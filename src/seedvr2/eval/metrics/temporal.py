"""Temporal consistency as flow-warping error (Lai et al. 2018, "Learning blind video temporal
consistency"). Lower is better.

For each pair of consecutive frames (t-1, t):

1. backward flow b (t -> t-1) and forward flow f (t-1 -> t) by OpenCV (Farneback or DIS) on the
   8-bit grey frames (MATLAB ``rgb2gray`` weights);
2. frame t-1 warped to t: W(p) = V_{t-1}(p + b(p)), bilinear;
3. a pixel is valid where p + b(p) lies inside the frame and the flows agree (the
   forward-backward check of Sundaram et al. 2010, as Lai et al. and Ruder et al. 2016 use it):
   |b(p) + f(p + b(p))|² <= 0.01 (|b(p)|² + |f(p + b(p))|²) + 0.5;
4. E_t = sum over valid p of ||V_t(p) - W(p)||² (squared error summed over channels, values in
   [0, 1]) / number of valid pixels.

The score is the mean of E_t over pairs with at least one valid pixel. As in Lai et al.'s
``evaluate_WarpError.py``, the flow may come from other frames than the scored ones (they use the
unprocessed input): pass ``flow_frames``.
"""

from __future__ import annotations

from types import ModuleType
from typing import Literal

import numpy as np
import torch

from seedvr2.errors import InputError

from .frames import as_clip, as_clip_pair, rgb_to_gray

FlowMethod = Literal["farneback", "dis"]
CONSISTENCY_SCALE = 0.01
CONSISTENCY_OFFSET = 0.5  # squared pixels


def _cv2() -> ModuleType:
    """OpenCV, imported only when flow is needed (it is an optional dependency)."""
    try:
        import cv2
    except ImportError as err:
        raise InputError(
            "warping_error needs OpenCV for optical flow: pip install opencv-python-headless"
        ) from err
    return cv2


def optical_flow(first: np.ndarray, second: np.ndarray, method: FlowMethod) -> np.ndarray:
    """Dense flow ``(h, w, 2)`` (x, y) from 8-bit grey ``first`` to ``second``: first(p) ~ second(p + flow(p)).

    Farneback uses the settings of OpenCV's optical-flow tutorial (pyramid scale 0.5, 15-pixel
    window, 3 iterations, poly_n 5, poly_sigma 1.2) with 5 pyramid levels instead of 3, for the
    larger motions of HD video; DIS uses ``PRESET_MEDIUM``.
    """
    cv2 = _cv2()
    if method == "farneback":
        return cv2.calcOpticalFlowFarneback(first, second, None, 0.5, 5, 15, 3, 5, 1.2, 0)
    return cv2.DISOpticalFlow_create(cv2.DISOPTICAL_FLOW_PRESET_MEDIUM).calc(first, second, None)


def warp(image: np.ndarray, flow: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``image`` ``(h, w, c)`` sampled at p + flow(p), bilinear; and where p + flow(p) is inside."""
    cv2 = _cv2()
    height, width = flow.shape[:2]
    grid_x, grid_y = np.meshgrid(
        np.arange(width, dtype=np.float32), np.arange(height, dtype=np.float32)
    )
    map_x, map_y = grid_x + flow[..., 0], grid_y + flow[..., 1]
    warped = cv2.remap(image, map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    inside = (map_x >= 0) & (map_x <= width - 1) & (map_y >= 0) & (map_y <= height - 1)
    return warped.reshape(image.shape), inside


def consistent(backward: np.ndarray, forward: np.ndarray) -> np.ndarray:
    """Forward-backward check ``(h, w)``: where following b then f returns near the start."""
    forward_at_target, inside = warp(forward, backward)
    round_trip = np.sum((backward + forward_at_target) ** 2, axis=-1)
    magnitude = np.sum(backward**2, axis=-1) + np.sum(forward_at_target**2, axis=-1)
    return inside & (round_trip <= CONSISTENCY_SCALE * magnitude + CONSISTENCY_OFFSET)


def _as_image(frame: torch.Tensor) -> np.ndarray:
    """``(c, h, w)`` tensor -> ``(h, w, c)`` float32 array, as OpenCV wants it."""
    return frame.detach().to("cpu", torch.float32).permute(1, 2, 0).contiguous().numpy()


def _as_gray8(frame: torch.Tensor) -> np.ndarray:
    """``(c, h, w)`` tensor -> ``(h, w)`` uint8 grey, rounded as MATLAB."""
    gray = torch.floor(rgb_to_gray(frame[None].detach().to("cpu", torch.float64)) + 0.5)
    return gray.clamp(0, 255).to(torch.uint8)[0, 0].numpy()


def warping_error(
    frames: torch.Tensor,
    flow: FlowMethod = "farneback",
    flow_frames: torch.Tensor | None = None,
) -> float:
    """Flow-warping error of a clip (see the module docstring for the exact definition).

    Args:
        frames: ``(f, c, h, w)`` in [0, 1], at least 2 frames.
        flow: the OpenCV optical flow method.
        flow_frames: frames to estimate the flow on, same shape as ``frames`` (default: ``frames``).

    Returns:
        Mean squared warping error; NaN if no pair has a valid pixel.
    """
    if flow not in ("farneback", "dis"):
        raise InputError(f"flow must be 'farneback' or 'dis', got {flow!r}")
    clip = as_clip(frames)
    guide = (
        clip
        if flow_frames is None
        else as_clip_pair(frames, flow_frames, ("frames", "flow_frames"))[1]
    )
    if clip.shape[0] < 2:
        raise InputError(f"warping_error needs at least 2 frames, got shape {tuple(frames.shape)}")
    errors = []
    previous_image, previous_gray = _as_image(clip[0]), _as_gray8(guide[0])
    for t in range(1, clip.shape[0]):
        image, gray = _as_image(clip[t]), _as_gray8(guide[t])
        backward = optical_flow(gray, previous_gray, flow)
        forward = optical_flow(previous_gray, gray, flow)
        warped, _ = warp(previous_image, backward)
        valid = consistent(backward, forward)
        if valid.any():
            errors.append(float(np.sum((image - warped) ** 2, axis=-1)[valid].mean()))
        previous_image, previous_gray = image, gray
    return float(np.mean(errors)) if errors else float("nan")
