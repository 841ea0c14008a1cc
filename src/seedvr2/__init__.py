"""SeedVR2: one-step diffusion-transformer video restoration and upscaling.

``from seedvr2 import Restorer`` is the Python API (see :mod:`seedvr2.pipeline`).
"""

from typing import Any

__version__ = "0.1.0"


def __getattr__(name: str) -> Any:  # lazy: importing seedvr2 does not import torch
    if name == "Restorer":
        from seedvr2.pipeline import Restorer

        return Restorer
    raise AttributeError(f"module 'seedvr2' has no attribute {name!r}")
