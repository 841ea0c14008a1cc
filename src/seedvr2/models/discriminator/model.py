"""APT-style discriminator: a DiT backbone with cross-attention-only heads (paper §3.3, Fig. 2).

The backbone is a copy of a diffusion DiT. After chosen blocks (the paper: 16, 26, 36 of 36,
1-indexed) a head with one learnable query token cross-attends to the clip's video tokens; the
head tokens are concatenated, normalised and projected to one logit per clip. The video tokens
entering each head are the features of the feature-matching loss (eq. 4).

Dimension key: ``b`` clips, ``l`` tokens, ``d`` width, ``n`` heads, ``k`` head dim.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn

from seedvr2.errors import ConfigError

from ..dit import DiTConfig, SeedVR2DiT


@dataclass(frozen=True)
class DiscriminatorConfig:
    """Where heads attach and how wide they are."""

    head_blocks: tuple[int, ...] = (16, 26, 36)  # 1-indexed backbone blocks followed by a head
    head_heads: int = 8  # attention heads inside each cross-attention head
    mlp_ratio: float = 4.0

    def validate(self, backbone: DiTConfig) -> None:
        if not self.head_blocks:
            raise ConfigError("the discriminator needs at least one head block")
        bad = [b for b in self.head_blocks if not 1 <= b <= backbone.num_layers]
        if bad:
            raise ConfigError(f"head blocks {bad} outside 1..{backbone.num_layers}")
        if backbone.dim % self.head_heads:
            raise ConfigError(f"width {backbone.dim} not divisible by {self.head_heads} heads")

    @classmethod
    def proportional(cls, num_layers: int, reference: tuple[int, ...] = (16, 26, 36)) -> tuple:
        """Head positions scaled from the paper's 36-block backbone to ``num_layers`` blocks."""
        return tuple(sorted({max(1, round(b * num_layers / 36)) for b in reference}))


class DiscriminatorOutput(NamedTuple):
    logits: torch.Tensor  # (b,)
    features: list[torch.Tensor]  # per head: (l, d) video tokens entering the head


class CrossAttentionHead(nn.Module):
    """One learnable query token: norm -> cross-attention to the clip's tokens -> MLP."""

    def __init__(self, dim: int, heads: int, mlp_ratio: float) -> None:
        super().__init__()
        self.heads = heads
        self.query = nn.Parameter(torch.randn(1, dim) * dim**-0.5)
        self.norm_q = nn.LayerNorm(dim)
        self.norm_kv = nn.LayerNorm(dim)
        self.to_q = nn.Linear(dim, dim)
        self.to_kv = nn.Linear(dim, 2 * dim)
        self.proj = nn.Linear(dim, dim)
        self.norm_mlp = nn.LayerNorm(dim)
        hidden = int(dim * mlp_ratio)
        self.mlp = nn.Sequential(nn.Linear(dim, hidden), nn.GELU(approximate="tanh"),
                                 nn.Linear(hidden, dim))

    def forward(self, tokens: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """(l, d) packed video tokens of b clips -> (b, d) head tokens."""
        q = rearrange(self.to_q(self.norm_q(self.query)), "1 (n k) -> n 1 k", n=self.heads)
        kv = self.to_kv(self.norm_kv(tokens))
        outs = []
        for clip_kv in kv.split(lengths.tolist()):
            k, v = rearrange(clip_kv, "l (two n k) -> two n l k", two=2, n=self.heads)
            outs.append(rearrange(F.scaled_dot_product_attention(q, k, v), "n 1 k -> (n k)"))
        x = self.query + self.proj(torch.stack(outs))  # (b, d)
        return x + self.mlp(self.norm_mlp(x))


class SeedVR2Discriminator(nn.Module):
    """Logits of packed latent clips (conditioned like the generator) plus matching features.

    Takes ownership of ``backbone`` (pass a copy of the diffusion DiT): its unused tail is frozen.
    """

    def __init__(self, backbone: SeedVR2DiT, config: DiscriminatorConfig | None = None) -> None:
        super().__init__()
        config = config or DiscriminatorConfig(
            head_blocks=DiscriminatorConfig.proportional(backbone.config.num_layers)
        )
        config.validate(backbone.config)
        self.config = config
        self.backbone = backbone
        dim = backbone.config.dim
        self.heads = nn.ModuleList(
            CrossAttentionHead(dim, config.head_heads, config.mlp_ratio) for _ in config.head_blocks
        )
        self.out_norm = nn.LayerNorm(dim * len(config.head_blocks))
        self.out_proj = nn.Linear(dim * len(config.head_blocks), 1)
        # The backbone's output head and the blocks after the last head never reach a logit.
        for module in (*backbone.blocks[max(config.head_blocks):], backbone.vid_out,
                       getattr(backbone, "vid_out_norm", None), getattr(backbone, "vid_out_ada", None)):
            if module is not None:
                module.requires_grad_(False)

    def forward(
        self,
        vid: torch.Tensor,  # (l, 33) packed [x | LQ latent | mask]
        txt: torch.Tensor,  # (l_txt, txt_in_dim)
        vid_shape: torch.Tensor,  # (b, 3)
        txt_shape: torch.Tensor,  # (b, 1)
        timestep: torch.Tensor | float,  # (b,) or scalar
    ) -> DiscriminatorOutput:
        state = self.backbone.embed(vid, txt, vid_shape, txt_shape, timestep)
        wanted = {block - 1: i for i, block in enumerate(self.config.head_blocks)}
        features: list[torch.Tensor] = []
        tokens: list[torch.Tensor] = []
        for index in range(max(wanted) + 1):
            state = self.backbone.run_block(index, state)
            if index in wanted:
                features.append(state.vid)
                tokens.append(self.heads[wanted[index]](state.vid, state.vid_lengths))
        logits = self.out_proj(self.out_norm(torch.cat(tokens, dim=-1)))[:, 0]  # (b,)
        return DiscriminatorOutput(logits, features)
