"""The adversarial discriminator: DiT backbone plus cross-attention heads."""

from .model import (
    CrossAttentionHead,
    DiscriminatorConfig,
    DiscriminatorOutput,
    SeedVR2Discriminator,
)

__all__ = ["CrossAttentionHead", "DiscriminatorConfig", "DiscriminatorOutput",
           "SeedVR2Discriminator"]
