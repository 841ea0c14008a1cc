"""The SeedVR2 DiT: config, presets and model."""

from .config import DIT_PRESETS, DiTConfig, resolve_dit_config
from .model import SeedVR2DiT, build_dit

__all__ = ["DIT_PRESETS", "DiTConfig", "SeedVR2DiT", "build_dit", "resolve_dit_config"]
