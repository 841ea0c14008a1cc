"""Pure-maths networks: the DiT, the causal video VAE and the discriminator."""

from .dit import build_dit

__all__ = ["build_dit"]
