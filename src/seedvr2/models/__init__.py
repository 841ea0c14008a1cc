"""Pure-maths networks: the DiT, the causal video VAE and the discriminator."""

from .dit import build_dit
from .vae import build_vae

__all__ = ["build_dit", "build_vae"]
