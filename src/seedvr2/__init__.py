"""SeedVR2: one-step diffusion-transformer video restoration and upscaling."""

__version__ = "0.1.0"
