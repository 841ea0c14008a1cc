"""Training: diffusion pre-training, progressive distillation, adversarial post-training, VAE.

``run(config_path, overrides)`` trains the stage a YAML config names (``seedvr2 train``);
``cache_latents`` precomputes latents for a config, ``export_weights`` writes a run's (EMA)
weights as one safetensors file. Importing this package only reads the config schema; the
stages, models and data are imported when first used (PEP 562 module ``__getattr__``).
"""

from __future__ import annotations

import importlib
from typing import Any

from .config import TrainConfig, load_config

_LAZY = {"run": "loop", "cache_latents": "latent_cache", "export_weights": "networks",
         "dry_run": "memory_estimate"}

__all__ = ["TrainConfig", "cache_latents", "dry_run", "export_weights", "load_config", "run"]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
