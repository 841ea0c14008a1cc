"""The causal video VAE: config, presets, model, posterior and spatial tiling."""

from .config import VAE_PRESETS, VAEConfig, resolve_vae_config
from .model import Posterior, VideoAutoencoder, build_vae
from .tiling import TileSpec

__all__ = [
    "VAE_PRESETS",
    "Posterior",
    "TileSpec",
    "VAEConfig",
    "VideoAutoencoder",
    "build_vae",
    "resolve_vae_config",
]
