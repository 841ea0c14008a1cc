"""VAE configuration: the dataclass, presets and the adapter for official arguments (spec §5.1).

The released SeedVR2 VAE is the official ``VideoAutoencoderKLWrapper`` built from
``s8_c16_t4_inflation_sd3.yaml``: 8x spatial and 4x temporal compression to 16 latent channels.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from seedvr2.errors import ConfigError


@dataclass(frozen=True)
class VAEConfig:
    """Hyper-parameters of the causal video VAE."""

    in_channels: int = 3  # RGB in [-1, 1]
    out_channels: int = 3
    latent_channels: int = 16  # the encoder emits twice this many (mean and log-variance)
    block_channels: tuple[int, ...] = (128, 256, 512, 512)  # encoder order; the decoder reverses
    layers_per_block: int = 2  # resnets per encoder block; decoder blocks have one more
    norm_groups: int = 32  # GroupNorm groups everywhere (mid attention included)
    norm_eps: float = 1e-6
    temporal_stages: int = 2  # resampling stages that also halve/double time (T = 1 + 4n)
    temporal_chunk: int = 4  # default video frames per chunk after the first; 0 = whole clip
    scaling_factor: float = 0.9152  # diffusion latent = (z - shifting_factor) * scaling_factor
    shifting_factor: float = 0.0

    def __post_init__(self) -> None:
        object.__setattr__(self, "block_channels", tuple(self.block_channels))
        if not self.block_channels:
            raise ConfigError("block_channels is empty; the VAE needs at least one block")
        for ch in self.block_channels:
            if ch <= 0 or ch % self.norm_groups:
                raise ConfigError(
                    f"block channel count {ch} is not a positive multiple of norm_groups "
                    f"{self.norm_groups}"
                )
        if not 0 <= self.temporal_stages < len(self.block_channels):
            raise ConfigError(
                f"temporal_stages {self.temporal_stages} must be in [0, "
                f"{len(self.block_channels) - 1}] (blocks with a resampler)"
            )
        if self.layers_per_block < 1:
            raise ConfigError(f"layers_per_block {self.layers_per_block} must be at least 1")
        if self.temporal_chunk < 0 or self.temporal_chunk % self.temporal_factor:
            raise ConfigError(
                f"temporal_chunk {self.temporal_chunk} must be 0 or a positive multiple of the "
                f"temporal factor {self.temporal_factor}"
            )

    @property
    def spatial_factor(self) -> int:
        """Pixels per latent cell along H and W (8 for the released VAE)."""
        return 2 ** (len(self.block_channels) - 1)

    @property
    def temporal_factor(self) -> int:
        """Video frames per latent frame after the first (4 for the released VAE)."""
        return 2**self.temporal_stages

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able dict (stored in checkpoints' metadata)."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> VAEConfig:
        """Inverse of :meth:`to_dict`; unknown keys are errors that name the key."""
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - names)
        if unknown:
            raise ConfigError(f"unknown VAE config keys {unknown}; known: {sorted(names)}")
        return cls(**values)

    @classmethod
    def from_official(cls, args: dict[str, Any]) -> VAEConfig:
        """Build from the official ``VideoAutoencoderKLWrapper`` arguments.

        Missing keys take the released values. Keys that select structures the released VAE does
        not use (quant convs, other block types, 2-D weight inflation modes) are rejected.
        ``freeze_encoder`` is a training switch with no effect on the network.
        """
        unknown = sorted(set(args) - _OFFICIAL_KEYS)
        if unknown:
            raise ConfigError(
                f"unknown official VAE argument(s) {unknown}; known: {sorted(_OFFICIAL_KEYS)}"
            )
        base = cls()
        channels = tuple(args.get("block_out_channels", base.block_channels))
        stages = int(args.get("temporal_scale_num", base.temporal_stages))
        expected: dict[str, Any] = {
            "act_fn": ("silu", "swish"),
            "inflation_mode": ("pad",),
            "use_quant_conv": (False,),
            "use_post_quant_conv": (False,),
            "freeze_encoder": (False, True),
            "down_block_types": (["DownEncoderBlock3D"] * len(channels),),
            "up_block_types": (["UpDecoderBlock3D"] * len(channels),),
            "spatial_downsample_factor": (2 ** (len(channels) - 1),),
            "temporal_downsample_factor": (2**stages,),
        }
        for key, allowed in expected.items():
            if key not in args:
                continue
            value = list(args[key]) if isinstance(args[key], (list, tuple)) else args[key]
            if value not in allowed:
                raise ConfigError(
                    f"official VAE argument {key}={args[key]!r} is unsupported; "
                    f"expected one of {list(allowed)}"
                )
        return cls(
            in_channels=int(args.get("in_channels", base.in_channels)),
            out_channels=int(args.get("out_channels", base.out_channels)),
            latent_channels=int(args.get("latent_channels", base.latent_channels)),
            block_channels=channels,
            layers_per_block=int(args.get("layers_per_block", base.layers_per_block)),
            norm_groups=int(args.get("norm_num_groups", base.norm_groups)),
            temporal_stages=stages,
            temporal_chunk=int(args.get("slicing_sample_min_size", base.temporal_chunk)),
        )


_OFFICIAL_KEYS = frozenset(
    {
        "act_fn", "block_out_channels", "down_block_types", "in_channels", "latent_channels",
        "layers_per_block", "norm_num_groups", "out_channels", "slicing_sample_min_size",
        "temporal_scale_num", "inflation_mode", "up_block_types", "spatial_downsample_factor",
        "temporal_downsample_factor", "use_quant_conv", "use_post_quant_conv", "freeze_encoder",
    }
)

VAE_PRESETS: dict[str, VAEConfig] = {
    "released": VAEConfig(),
    # The golden-vector structure: same layout, narrow; for tests and CPU experiments.
    "tiny": VAEConfig(block_channels=(16, 16, 32, 32), norm_groups=8),
    # A learnt VAE small enough to train on a 2-core CPU: 4x spatial, no temporal compression,
    # 16 latent channels (3x fewer values than pixels); configs/train/small_vae.yaml.
    "small": VAEConfig(block_channels=(16, 32, 32), layers_per_block=1, norm_groups=8,
                       temporal_stages=0),
}


def resolve_vae_config(config: str | dict[str, Any] | VAEConfig | None) -> VAEConfig:
    """Turn ``None`` (released), a preset name, an official/own dict, or a config into a config.

    A dict whose keys are all :class:`VAEConfig` fields is read as ours, anything else as the
    official constructor arguments.
    """
    if config is None:
        return VAE_PRESETS["released"]
    if isinstance(config, VAEConfig):
        return config
    if isinstance(config, str):
        if config not in VAE_PRESETS:
            raise ConfigError(f"unknown VAE preset {config!r}; choose one of {sorted(VAE_PRESETS)}")
        return VAE_PRESETS[config]
    if isinstance(config, dict):
        if set(config) <= {f.name for f in dataclasses.fields(VAEConfig)}:
            return VAEConfig.from_dict(config)
        return VAEConfig.from_official(config)
    raise ConfigError(f"VAE config must be a preset name, dict or VAEConfig, not {type(config)}")
