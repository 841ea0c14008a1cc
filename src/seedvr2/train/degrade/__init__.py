"""Real-world degradation synthesis for training pairs (spec §3): HQ clip -> LQ clip.

``degrade_video(clip, load_degradation_config(path), generator)`` runs the second-order
Real-ESRGAN / RealBasicVSR pipeline; its parts (kernels, JPEG, codec round trip) are usable alone.
"""

from .codec import video_compress
from .config import DegradationConfig, Range, load_degradation_config, parse_degradation_config
from .jpeg import jpeg_compress
from .kernels import gaussian_kernels, sinc_kernels
from .pipeline import degrade_video

__all__ = [
    "DegradationConfig",
    "Range",
    "degrade_video",
    "gaussian_kernels",
    "jpeg_compress",
    "load_degradation_config",
    "parse_degradation_config",
    "sinc_kernels",
    "video_compress",
]
