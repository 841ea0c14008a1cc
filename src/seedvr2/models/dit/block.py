"""The two-stream ("MM") transformer block with joint windowed attention (spec §1.5).

Dimension key: ``l`` packed tokens, ``d`` width, ``n`` heads, ``k`` head dim, ``g`` windows.
"""

from __future__ import annotations

import torch
from einops import rearrange
from torch import nn

from .attention import Backend, WindowPlan, grouped_attention
from .config import DiTConfig
from .layers import (
    AdaParams,
    DualStream,
    Modulation,
    RMSNorm,
    make_mlp,
    modulate,
    per_token,
    rms_norm,
    row_chunks,
    take_rows,
)
from .rope import RotaryEmbedding3d, apply_rotary, rotate, rotation_factors


class JointWindowAttention(nn.Module):
    """Video tokens attend within their window plus their clip's text; text averages windows."""

    def __init__(self, config: DiTConfig, shared: bool, **factory) -> None:
        super().__init__()
        dim, inner = config.dim, config.heads * config.head_dim
        self.heads = config.heads
        self.proj_qkv = DualStream(lambda: nn.Linear(dim, 3 * inner, bias=False, **factory), shared)
        self.proj_out = DualStream(lambda: nn.Linear(inner, dim, **factory), shared)

        def qk_norm() -> nn.Module:
            return RMSNorm(config.head_dim, eps=config.norm_eps, **factory)

        self.norm_q = DualStream(qk_norm, shared)
        self.norm_k = DualStream(qk_norm, shared)
        self.rope = RotaryEmbedding3d(config, device=factory.get("device"))

    def project(
        self, x: torch.Tensor, stream: str, factors: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, ...]:  # q, k, v, each (l, n, k)
        """q, k, v of normalised, modulated rows ``x`` (l, d): qkv projection and q/k norms,
        then RoPE by ``factors`` (l, 1, k/2) where given (video rows)."""
        qkv = rearrange(
            self.proj_qkv.stream(stream)(x), "l (three n k) -> three l n k", three=3, n=self.heads
        )
        q = self.norm_q.stream(stream)(qkv[0])
        k = self.norm_k.stream(stream)(qkv[1])
        if factors is not None:
            q, k = rotate(q, factors), rotate(k, factors)
        return q, k, qkv[2]

    def project_text(
        self, txt: torch.Tensor, text_lengths: list[int]
    ) -> tuple[torch.Tensor, ...]:  # q, k, v, each (l_txt, n, k)
        """q, k, v of the text rows; RoPE at positions (i, i, i) per clip (3B only; identical in
        every window)."""
        q, k, v = self.project(txt, "txt")
        if not self.rope.rotates_text or q.shape[0] == 0:
            return q, k, v
        angles = torch.cat([self.rope.text_angles(n) for n in text_lengths])  # (l_txt, p)
        return apply_rotary(q, angles), apply_rotary(k, angles), v

    def video_factors(self, plan: WindowPlan, head_dim: int) -> torch.Tensor:
        """RoPE factors (l_vid, 1, k/2) of every video row at its window-local position.

        Cached on the plan: every block of a forward shares it. A plan serves one DiT, whose
        blocks all hold the same frequency buffer (one config), so the key needs no values
        (reading them would synchronise a GPU in every block).
        """
        key = ("rope", self.rope.kind, head_dim)
        if key not in plan.cache:
            rows = sum(group.vid_index.numel() for group in plan.groups)
            freqs = self.rope.rope.freqs
            angles = torch.empty(rows, 3 * freqs.numel(), device=freqs.device)
            for group in plan.groups:
                window = self.rope.video_angles(group.shape, group.text_len)  # (t*h*w, p)
                angles[group.vid_index.reshape(-1)] = window.repeat(group.vid_index.shape[0], 1)
            plan.cache[key] = rotation_factors(angles, head_dim)
        return plan.cache[key]

    def attend(
        self,
        q_all: torch.Tensor,  # (l_vid + l_txt, n, k): video rows, then text rows
        k_all: torch.Tensor,
        v_all: torch.Tensor,
        l_vid: int,
        plan: WindowPlan,
        with_text_output: bool = True,
        backend: Backend = "auto",
    ) -> tuple[torch.Tensor, torch.Tensor | None]:  # (l_vid, n, k), text (l_txt, d) or None
        """Windowed attention; the text output is its mean over each clip's windows, projected."""
        segments = []
        for group in plan.groups:  # one gather per segment tensor from [video rows | text rows]
            rows = group.seg_index if with_text_output else group.vid_index
            segments.append(tuple(
                x.index_select(0, index.reshape(-1)).unflatten(0, index.shape)
                for x, index in ((q_all, rows), (k_all, group.seg_index), (v_all, group.seg_index))
            ))  # each (g, s, n, k)
        outputs = grouped_attention(segments, backend)

        out_vid = q_all.new_empty(l_vid, *q_all.shape[1:])
        out_txt = q_all.new_zeros(q_all.shape[0] - l_vid, *q_all.shape[1:]) if (
            with_text_output) else None
        for group, out in zip(plan.groups, outputs):
            win_len = group.vid_index.shape[1]
            out_vid[group.vid_index.reshape(-1)] = out[:, :win_len].flatten(0, 1)
            if out_txt is not None:  # sum over each clip's windows
                for t0, t1, w0, w1 in group.txt_clips:
                    out_txt[t0:t1] += out[w0:w1, win_len:].sum(0)
        if out_txt is None:
            return out_vid, None
        if plan.text_sum is not None:
            out_txt = plan.text_sum(out_txt)
        mean_txt = out_txt.flatten(1) / plan.windows_per_txt_row.to(out_txt.dtype)
        return out_vid, self.proj_out.stream("txt")(mean_txt)


class MMBlock(nn.Module):
    """Pre-norm block: modulated attention and MLP, each with a gated residual, per stream.

    ``shared`` blocks use one weight set for both streams. ``vid_only`` (3B last block) leaves the
    text stream un-modulated: text enters attention as ``rmsnorm(x_txt)`` and is not updated.
    """

    def __init__(
        self, config: DiTConfig, shared: bool, shifted: bool, vid_only: bool, **factory
    ) -> None:
        super().__init__()
        self.eps = config.norm_eps
        self.shifted = shifted
        self.vid_only = vid_only
        self.attn = JointWindowAttention(config, shared, **factory)
        self.mlp = DualStream(lambda: make_mlp(config, **factory), shared)
        self.ada = DualStream(lambda: AdaParams(config.dim, **factory), shared)

    def _modulations(
        self, stream: str, emb: tuple[Modulation, Modulation], lengths: torch.Tensor
    ) -> tuple[Modulation, Modulation]:
        ada = self.ada.stream(stream)
        return tuple(
            Modulation(*(per_token(v, lengths) for v in ada.combine(layer, layer_emb)))
            for layer, layer_emb in zip(("attn", "mlp"), emb)
        )

    def _attention_inputs(
        self,
        vid: torch.Tensor,  # (l_vid, d)
        a_txt: torch.Tensor,  # (l_txt, d), normalised (and modulated)
        vid_attn: Modulation,
        plan: WindowPlan,
        text_lengths: list[int],
    ) -> tuple[torch.Tensor, ...]:  # q, k, v, each (l_vid + l_txt, n, k)
        """q, k, v of [video rows | text rows], video rows computed range by range into them."""
        attn = self.attn
        l_vid, (q_txt, k_txt, v_txt) = vid.shape[0], attn.project_text(a_txt, text_lengths)
        factors = attn.video_factors(plan, q_txt.shape[-1])  # (l_vid, 1, k/2)
        buffers = [x.new_empty(l_vid + x.shape[0], *x.shape[1:]) for x in (q_txt, k_txt, v_txt)]
        for rows in row_chunks(vid):
            a_vid = modulate(rms_norm(vid[rows], self.eps), _rows(vid_attn, rows))
            for buffer, x in zip(buffers, attn.project(a_vid, "vid", factors[rows])):
                buffer[rows] = x
        for buffer, x in zip(buffers, (q_txt, k_txt, v_txt)):
            buffer[l_vid:] = x
        return tuple(buffers)

    def _video_residuals(
        self,
        vid: torch.Tensor,  # (l_vid, d)
        attended: torch.Tensor,  # (l_vid, n, k)
        vid_attn: Modulation,
        vid_mlp: Modulation,
    ) -> torch.Tensor:  # (l_vid, d)
        """The attention output's and then the MLP's gated residuals, range by range."""
        proj_out, mlp = self.attn.proj_out.stream("vid"), self.mlp.stream("vid")

        def update(rows: slice) -> torch.Tensor:
            x = torch.addcmul(vid[rows], proj_out(attended[rows].flatten(1)),
                              take_rows(vid_attn.gate, rows))  # x + out * gate
            mod = _rows(vid_mlp, rows)
            return torch.addcmul(x, mlp(modulate(rms_norm(x, self.eps), mod)), mod.gate)

        chunks = row_chunks(vid)
        if len(chunks) == 1:
            return update(chunks[0])
        out = torch.empty_like(vid)
        for rows in chunks:
            out[rows] = update(rows)
        return out

    def forward(
        self,
        vid: torch.Tensor,  # (l_vid, d)
        txt: torch.Tensor,  # (l_txt, d)
        emb: tuple[Modulation, Modulation],  # attn / mlp, each (b, d)
        vid_lengths: torch.Tensor,  # (b,) patched tokens per clip
        txt_lengths: torch.Tensor,  # (b,)
        plan: WindowPlan,
        backend: Backend = "auto",
    ) -> tuple[torch.Tensor, torch.Tensor]:
        vid_attn, vid_mlp = self._modulations("vid", emb, vid_lengths)
        a_txt = rms_norm(txt, self.eps)
        if not self.vid_only:
            txt_attn, txt_mlp = self._modulations("txt", emb, txt_lengths)
            a_txt = modulate(a_txt, txt_attn)
        qkv = self._attention_inputs(vid, a_txt, vid_attn, plan, txt_lengths.tolist())
        attended, o_txt = self.attn.attend(*qkv, vid.shape[0], plan, not self.vid_only, backend)
        vid = self._video_residuals(vid, attended, vid_attn, vid_mlp)
        if self.vid_only:
            return vid, txt
        txt = torch.addcmul(txt, o_txt, txt_attn.gate)
        txt = torch.addcmul(
            txt, self.mlp.stream("txt")(modulate(rms_norm(txt, self.eps), txt_mlp)), txt_mlp.gate
        )
        return vid, txt


def _rows(mod: Modulation, rows: slice) -> Modulation:
    """The modulation of token rows ``rows`` (per-token values sliced, one clip's as is)."""
    return Modulation(*(take_rows(v, rows) for v in mod))
