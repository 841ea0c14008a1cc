"""The SeedVR2 native-resolution DiT (both released structures, one code base).

Input and output are *packed*: clips of different sizes concatenated along the token axis, with
per-clip shapes alongside (spec §2). Dimension key: ``b`` clips, ``l`` tokens, ``c`` channels,
``d`` width.
"""

from __future__ import annotations

import dataclasses

import torch
from torch import nn
from torch.utils.checkpoint import checkpoint

from seedvr2.errors import InputError

from .attention import Backend, WindowPlan, build_window_plan
from .block import MMBlock
from .config import SHIFTED, DiTConfig, resolve_dit_config
from .layers import (
    AdaParams,
    Modulation,
    PatchLinear,
    TimeEmbedding,
    modulate,
    patchify,
    per_token,
    split_time_embedding,
    unpatchify,
)
from .sequence_parallel import SequenceParallel


@dataclasses.dataclass(frozen=True)
class TokenState:
    """Everything the blocks read: token streams, modulation, lengths and window plans."""

    vid: torch.Tensor  # (l', d) patched video tokens
    txt: torch.Tensor  # (l_txt, d)
    modulation: tuple[Modulation, Modulation]  # attn / mlp, each (b, d)
    vid_lengths: torch.Tensor  # (b,) patched tokens per clip
    txt_lengths: torch.Tensor  # (b,)
    plans: dict[bool, WindowPlan]  # by "shifted"
    vid_shape: torch.Tensor  # (b, 3) latent (t, h, w), on the CPU


class SeedVR2DiT(nn.Module):
    """Predicts the velocity ``v = x_T - x_0`` of packed latent clips (v-prediction, lerp)."""

    def __init__(
        self,
        config: DiTConfig,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        self.config = config
        self.attention_backend: Backend = "auto"
        self.gradient_checkpointing = False
        self.sequence_parallel: SequenceParallel | None = None  # set: tokens split over processes
        factory = dict(device=device, dtype=dtype)
        d = config.dim
        self.vid_in = PatchLinear(config.patch_channels, d, **factory)
        self.txt_in = nn.Linear(config.txt_in_dim, d, **factory)
        self.emb_in = TimeEmbedding(d, config.emb_dim, **factory)
        last = config.num_layers - 1
        self.blocks = nn.ModuleList(
            MMBlock(
                config,
                shared=i >= config.mm_layers,
                shifted=config.window_methods[i] == SHIFTED,
                vid_only=config.last_block_vid_only and i == last,
                **factory,
            )
            for i in range(config.num_layers)
        )
        if config.out_norm:
            self.vid_out_norm = nn.RMSNorm(d, eps=config.norm_eps, **factory)
            self.vid_out_ada = AdaParams(d, layers=("out",), **factory)
        _, ph, pw = config.patch_size
        self.vid_out = PatchLinear(d, config.vid_out_channels * ph * pw, **factory)

    def _check_inputs(
        self,
        vid: torch.Tensor,
        txt: torch.Tensor,
        vid_shape: torch.Tensor,
        txt_shape: torch.Tensor,
        timestep: torch.Tensor,
    ) -> None:
        cfg = self.config
        if vid.ndim != 2 or vid.shape[1] != cfg.vid_in_channels:
            raise InputError(f"vid must be (tokens, {cfg.vid_in_channels}), got {tuple(vid.shape)}")
        if txt.ndim != 2 or txt.shape[1] != cfg.txt_in_dim:
            raise InputError(f"txt must be (tokens, {cfg.txt_in_dim}), got {tuple(txt.shape)}")
        if vid_shape.ndim != 2 or vid_shape.shape[1] != 3:
            raise InputError(f"vid_shape must be (clips, 3), got {tuple(vid_shape.shape)}")
        if txt_shape.shape != (vid_shape.shape[0], 1):
            raise InputError(
                f"txt_shape must be ({vid_shape.shape[0]}, 1), got {tuple(txt_shape.shape)}"
            )
        if int(vid_shape.prod(-1).sum()) != vid.shape[0]:
            raise InputError(
                f"vid has {vid.shape[0]} rows but vid_shape {vid_shape.tolist()} describes "
                f"{int(vid_shape.prod(-1).sum())}"
            )
        if int(txt_shape.sum()) != txt.shape[0]:
            raise InputError(f"txt has {txt.shape[0]} rows, txt_shape sums to {int(txt_shape.sum())}")
        _, ph, pw = cfg.patch_size
        if bool(((vid_shape[:, 1] % ph) != 0).any() or ((vid_shape[:, 2] % pw) != 0).any()):
            raise InputError(f"latent h, w must be multiples of ({ph}, {pw}): {vid_shape.tolist()}")
        if timestep.numel() not in (1, vid_shape.shape[0]):
            raise InputError(f"need one timestep or one per clip, got {timestep.numel()}")

    def window_plans(
        self, vid_shape: torch.Tensor, txt_shape: torch.Tensor, device: torch.device
    ) -> dict[bool, WindowPlan]:
        """Regular and shifted window plans of a batch (computed once, shared by all blocks)."""
        _, ph, pw = self.config.patch_size
        grids = [(t, h // ph, w // pw) for t, h, w in vid_shape.tolist()]
        text = txt_shape[:, 0].tolist()
        return {
            shifted: build_window_plan(grids, text, self.config.num_windows, shifted, device)
            for shifted in {block.shifted for block in self.blocks}
        }

    def embed(
        self,
        vid: torch.Tensor,  # (l, 33) packed latent tokens [x_t | LQ latent | mask]
        txt: torch.Tensor,  # (l_txt, txt_in_dim) packed text embeddings
        vid_shape: torch.Tensor,  # (b, 3) latent (t, h, w) per clip
        txt_shape: torch.Tensor,  # (b, 1) text length per clip
        timestep: torch.Tensor | float,  # (b,) or scalar, in [0, 1000]
    ) -> TokenState:
        """Check the inputs, patchify and project them, embed the timestep, plan the windows."""
        timestep = torch.as_tensor(timestep, device=vid.device).reshape(-1)
        self._check_inputs(vid, txt, vid_shape, txt_shape, timestep)
        vid_shape, txt_shape = vid_shape.cpu(), txt_shape.cpu()
        patch = self.config.patch_size
        x_vid = self.vid_in(patchify(vid, vid_shape, patch))  # (l', d)
        emb = self.emb_in(timestep.expand(vid_shape.shape[0]), x_vid.dtype)  # (b, 6d)
        return TokenState(
            vid=x_vid,
            txt=self.txt_in(txt),  # (l_txt, d)
            modulation=split_time_embedding(emb),
            vid_lengths=(vid_shape.prod(-1) // (patch[1] * patch[2])).to(vid.device),
            txt_lengths=txt_shape[:, 0].to(vid.device),
            plans=self.window_plans(vid_shape, txt_shape, vid.device),
            vid_shape=vid_shape,
        )

    def run_block(self, index: int, state: TokenState) -> TokenState:
        """Apply block ``index`` (with gradient checkpointing when enabled and training)."""
        block = self.blocks[index]
        args = (state.vid, state.txt, state.modulation, state.vid_lengths, state.txt_lengths,
                state.plans[block.shifted], self.attention_backend)
        if self.gradient_checkpointing and torch.is_grad_enabled():
            vid, txt = checkpoint(block, *args, use_reentrant=False)
        else:
            vid, txt = block(*args)
        return dataclasses.replace(state, vid=vid, txt=txt)

    def unembed(self, state: TokenState) -> torch.Tensor:  # (l, 16)
        """Output head: (3B) norm and modulation, projection, unpatchify."""
        return unpatchify(self.head(state), state.vid_shape, self.config.patch_size)

    def head(self, state: TokenState) -> torch.Tensor:  # (l', 16 * ph * pw)
        """The output head before unpatchify, per patched row (of those ``state`` holds)."""
        x_vid = state.vid
        if self.config.out_norm:
            # The official cache-key collision makes the output head reuse the *attention*
            # shift/scale slices of the embedding (spec §1.7).
            out = self.vid_out_ada.combine("out", state.modulation[0])
            lengths = state.vid_lengths
            x_vid = modulate(
                self.vid_out_norm(x_vid),
                Modulation(per_token(out.shift, lengths), per_token(out.scale, lengths), 0),
            )
        return self.vid_out(x_vid)

    def forward(
        self,
        vid: torch.Tensor,  # (l, 33) packed latent tokens [x_t | LQ latent | mask]
        txt: torch.Tensor,  # (l_txt, txt_in_dim) packed text embeddings
        vid_shape: torch.Tensor,  # (b, 3) latent (t, h, w) per clip
        txt_shape: torch.Tensor,  # (b, 1) text length per clip
        timestep: torch.Tensor | float,  # (b,) or scalar, in [0, 1000]
    ) -> torch.Tensor:  # (l, 16) packed velocity
        state = self.embed(vid, txt, vid_shape, txt_shape, timestep)
        if self.sequence_parallel is None:
            for index in range(len(self.blocks)):
                state = self.run_block(index, state)
            return self.unembed(state)
        sharding = self.sequence_parallel.shard(state.plans, state.vid_lengths)
        for index, block in enumerate(self.blocks):
            state = self.run_block(index, sharding.enter(state, block.shifted))
        rows = sharding.gather(self.head(state))  # (l', 16 * ph * pw), every rank's
        return unpatchify(rows, state.vid_shape, self.config.patch_size)


def build_dit(
    config: str | dict | DiTConfig = "3b",
    device: torch.device | str | None = None,
    dtype: torch.dtype | None = None,
) -> SeedVR2DiT:
    """Build a DiT from a preset name (``3b``, ``7b``, ...), official arguments, or a config.

    ``device="meta"`` builds the full-size models without allocating their weights.
    """
    return SeedVR2DiT(resolve_dit_config(config), device=device, dtype=dtype)
