"""Small modules of the DiT: two-stream containers, modulation, MLPs, embeddings, patching.

Dimension key: ``b`` clips, ``l`` packed tokens, ``d`` model width, ``c`` channels.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Literal, NamedTuple

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn

from .config import DiTConfig

Stream = Literal["vid", "txt"]


class DualStream(nn.Module):
    """Separate ``vid``/``txt`` copies of a module, or one ``all`` copy shared by both streams.

    The attribute names are the released checkpoints' (``blocks.N.mlp.vid.*`` / ``.all.*``).
    """

    def __init__(self, make: Callable[[], nn.Module], shared: bool) -> None:
        super().__init__()
        self.shared = shared
        if shared:
            self.all = make()
        else:
            self.vid = make()
            self.txt = make()

    def stream(self, name: Stream) -> nn.Module:
        """The module that processes stream ``name``."""
        return self.all if self.shared else getattr(self, name)


class Modulation(NamedTuple):
    """Adaptive shift / scale / gate for one sub-layer, each (b, d) or per token (l, d)."""

    shift: torch.Tensor
    scale: torch.Tensor
    gate: torch.Tensor


def split_time_embedding(emb: torch.Tensor) -> tuple[Modulation, Modulation]:
    """Read the (b, 6d) time embedding as (b, d, 2, 3): [attn, mlp] x [shift, scale, gate].

    The layout is interleaved with ``d`` outermost (``emb[:, 0::6]`` is the attention shift);
    it is *not* ``emb.chunk(6)`` (spec §1.5).
    """
    grid = rearrange(emb, "b (d l g) -> l g b d", l=2, g=3)
    return Modulation(*grid[0]), Modulation(*grid[1])


class AdaParams(nn.Module):
    """Learned per-block vectors added to the time-embedding modulation (``ada.{vid,txt,all}``)."""

    def __init__(self, dim: int, layers: tuple[str, ...] = ("attn", "mlp"), **factory) -> None:
        super().__init__()
        self.layers = layers
        for layer in layers:
            # Initialised to the identity modulation: no shift, unit scale, closed gate.
            self.register_parameter(f"{layer}_shift", nn.Parameter(torch.zeros(dim, **factory)))
            self.register_parameter(f"{layer}_scale", nn.Parameter(torch.ones(dim, **factory)))
            if layer != "out":
                self.register_parameter(f"{layer}_gate", nn.Parameter(torch.zeros(dim, **factory)))

    def combine(self, layer: str, emb: Modulation) -> Modulation:
        """``emb + learned`` for each of shift / scale / gate, still per clip (b, d)."""
        gate = getattr(self, f"{layer}_gate", None)
        return Modulation(
            emb.shift + getattr(self, f"{layer}_shift"),
            emb.scale + getattr(self, f"{layer}_scale"),
            emb.gate + gate if gate is not None else emb.gate,
        )


def per_token(values: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """Repeat per-clip rows (b, d) over each clip's tokens -> (l, d); one clip broadcasts (1, d)."""
    if values.shape[0] == 1:
        return values
    return torch.repeat_interleave(values, lengths, dim=0, output_size=int(lengths.sum()))


def row_chunks(x: torch.Tensor) -> list[slice]:
    """Row ranges in which to run the row-wise sub-layers over a (l, d) token tensor.

    fp32 CPU inference: ranges of about 2 MiB of rows ((l, d) floats), so that a sub-layer's
    chain of temporaries (norm, modulation, projections, activations) stays in cache instead of
    streaming (l, d) tensors through memory once per operation. With the attention inputs
    written in place, the bundled model's DiT took 13-14 s instead of 18-20 s for 21 frames at
    848x480 on 2 cores (`benchmarks/RESULTS.md`). Elsewhere (GPU, autograd, other dtypes) one
    range: small kernels would cost launches there, and autograd would keep every range's graph.
    """
    rows = x.shape[0]
    if x.dtype != torch.float32 or x.device.type != "cpu" or torch.is_grad_enabled():
        return [slice(0, rows)]
    step = max(1024, (1 << 19) // x.shape[-1])
    return [slice(start, min(start + step, rows)) for start in range(0, rows, step)]


def take_rows(values: torch.Tensor, rows: slice) -> torch.Tensor:
    """``values[rows]`` of per-token values (l, ...); per-clip values of one clip (1, ...) as is."""
    return values if values.shape[0] == 1 else values[rows]


def modulate(x: torch.Tensor, mod: Modulation) -> torch.Tensor:
    """``x * scale + shift`` (no implicit ``1 +``: the learned scale starts at 1); one kernel."""
    return torch.addcmul(mod.shift, x, mod.scale)


class SwiGLU(nn.Module):
    """``proj_out(silu(proj_in_gate(x)) * proj_in(x))``, no biases (3B)."""

    def __init__(self, dim: int, hidden: int, **factory) -> None:
        super().__init__()
        self.proj_in_gate = nn.Linear(dim, hidden, bias=False, **factory)
        self.proj_in = nn.Linear(dim, hidden, bias=False, **factory)
        self.proj_out = nn.Linear(hidden, dim, bias=False, **factory)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        gate = self.proj_in_gate(x)
        if torch.is_grad_enabled():
            return self.proj_out(F.silu(gate) * self.proj_in(x))
        # Inference: the same values, without two (tokens x hidden) temporaries.
        return self.proj_out(F.silu(gate, inplace=True).mul_(self.proj_in(x)))


class GeluMLP(nn.Module):
    """``proj_out(gelu_tanh(proj_in(x)))`` with biases (7B)."""

    def __init__(self, dim: int, hidden: int, **factory) -> None:
        super().__init__()
        self.proj_in = nn.Linear(dim, hidden, **factory)
        self.proj_out = nn.Linear(hidden, dim, **factory)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj_out(F.gelu(self.proj_in(x), approximate="tanh"))


def make_mlp(config: DiTConfig, **factory) -> nn.Module:
    """The block MLP of the configured structure."""
    mlp = SwiGLU if config.mlp_type == "swiglu" else GeluMLP
    return mlp(config.dim, config.mlp_hidden, **factory)


def rms_norm(x: torch.Tensor, eps: float, weight: torch.Tensor | None = None) -> torch.Tensor:
    """RMSNorm over the last dim, times ``weight`` when given (the block norms have none).

    fp32 inference on the CPU: one reduction pass (``vector_norm``) and in-place scaling,
    1.7-2.6x faster than ``F.rms_norm``'s composite there (same values to float rounding);
    elsewhere, with autograd, and in other dtypes (whose rounding the goldens pin),
    ``F.rms_norm``.
    """
    if x.dtype != torch.float32 or x.device.type != "cpu" or torch.is_grad_enabled():
        return F.rms_norm(x, (x.shape[-1],), weight, eps)
    inverse = torch.linalg.vector_norm(x, dim=-1, keepdim=True)
    out = x * inverse.square_().div_(x.shape[-1]).add_(eps).rsqrt_()
    return out.mul_(weight) if weight is not None else out


class RMSNorm(nn.Module):
    """Affine RMSNorm (the q/k norms): ``nn.RMSNorm``'s parameter, :func:`rms_norm`'s speed."""

    def __init__(self, dim: int, eps: float, **factory) -> None:
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim, **factory))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return rms_norm(x, self.eps, self.weight)


def sinusoidal_embedding(timestep: torch.Tensor, dim: int = 256) -> torch.Tensor:
    """``[sin(t f_i), cos(t f_i)]``, ``f_i = exp(-ln(1e4) i / (dim/2))`` on raw t in [0, 1000].

    Same as diffusers' ``get_timestep_embedding`` with ``flip_sin_to_cos=False``, shift 0.
    """
    half = dim // 2
    exponent = -math.log(10000) * torch.arange(half, dtype=torch.float32, device=timestep.device)
    freqs = torch.exp(exponent / half)
    args = timestep.float()[:, None] * freqs[None]  # (b, half)
    return torch.cat([torch.sin(args), torch.cos(args)], dim=-1)


class TimeEmbedding(nn.Module):
    """Sinusoid -> Linear -> SiLU -> Linear -> SiLU -> Linear to (b, 6d) (``emb_in``)."""

    def __init__(self, dim: int, emb_dim: int, sinusoid_dim: int = 256, **factory) -> None:
        super().__init__()
        self.sinusoid_dim = sinusoid_dim
        self.proj_in = nn.Linear(sinusoid_dim, dim, **factory)
        self.proj_hid = nn.Linear(dim, dim, **factory)
        self.proj_out = nn.Linear(dim, emb_dim, **factory)

    def forward(self, timestep: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
        emb = sinusoidal_embedding(timestep, self.sinusoid_dim).to(dtype)
        return self.proj_out(F.silu(self.proj_hid(F.silu(self.proj_in(emb)))))


class PatchLinear(nn.Module):
    """Holds the ``proj`` Linear of ``vid_in`` / ``vid_out`` (checkpoint names)."""

    def __init__(self, in_features: int, out_features: int, **factory) -> None:
        super().__init__()
        self.proj = nn.Linear(in_features, out_features, **factory)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(x)


def patchify(
    vid: torch.Tensor,  # (l, c), clips packed in (t, h, w) row-major order
    shapes: torch.Tensor,  # (b, 3) latent (t, h, w)
    patch: tuple[int, int, int],
) -> torch.Tensor:  # (l / (ph pw), ph pw c), channel order (dy, dx, c)
    """Group each clip's (1, ph, pw) neighbourhoods into one token."""
    _, ph, pw = patch
    clips = torch.split(vid, shapes.prod(-1).tolist())
    return torch.cat([
        rearrange(x, "(t h dy w dx) c -> (t h w) (dy dx c)", t=t, h=h // ph, dy=ph, dx=pw)
        for x, (t, h, _) in zip(clips, shapes.tolist())
    ])


def unpatchify(
    tokens: torch.Tensor,  # (l', ph pw c)
    shapes: torch.Tensor,  # (b, 3) latent (t, h, w) before patching
    patch: tuple[int, int, int],
) -> torch.Tensor:  # (l, c)
    """Inverse of :func:`patchify`."""
    _, ph, pw = patch
    lengths = (shapes.prod(-1) // (ph * pw)).tolist()
    return torch.cat([
        rearrange(x, "(t h w) (dy dx c) -> (t h dy w dx) c", t=t, h=h // ph, dy=ph, dx=pw)
        for x, (t, h, _) in zip(torch.split(tokens, lengths), shapes.tolist())
    ])
