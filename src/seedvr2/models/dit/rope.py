"""3-axis rotary position embeddings of the two released structures (spec §4).

Both rotate interleaved pairs of head dims (GPT-J style): pair k = dims (2k, 2k+1), one angle per
pair, axis blocks concatenated t | h | w. Angles are computed for the positions in use, per window
shape, never as the official fixed 1024x128x128 table (8.4 GB).

* ``mmrope3d`` (3B): integer positions, inverse frequencies ``10000^(-2i/d)``; a video token at
  window-local (tau, y, x) of a clip with L text tokens sits at (L + tau, y, x); text token i at
  (i, i, i). Video and text are both rotated.
* ``rope3d`` (7B): positions ``linspace(-1, 1, n)`` over each window axis, frequencies
  ``linspace(1, 128, n) * pi``; only video is rotated.

Dimension key: ``l`` tokens, ``n`` heads, ``k`` head dim, ``p`` rotated pairs.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from .config import DiTConfig


def mmrope_inverse_frequencies(axis_dim: int) -> torch.Tensor:
    """``1 / 10000^(2i / axis_dim)`` for i < axis_dim / 2 (3B buffer, (21,) at full size)."""
    return 1.0 / (10000 ** (torch.arange(0, axis_dim, 2, dtype=torch.float32) / axis_dim))


def pixel_frequencies(num: int, max_freq: float = 256.0) -> torch.Tensor:
    """``linspace(1, max_freq / 2, num) * pi`` (7B buffer, (10,) at full size)."""
    return torch.linspace(1.0, max_freq / 2, num, dtype=torch.float32) * math.pi


class _Frequencies(nn.Module):
    """Holds the persistent ``freqs`` buffer under the checkpoint name ``rope.rope.freqs``."""

    def __init__(self, freqs: torch.Tensor) -> None:
        super().__init__()
        self.register_buffer("freqs", freqs, persistent=True)


class RotaryEmbedding3d(nn.Module):
    """Angles for video windows (and text, for ``mmrope3d``) from the learned-free buffer."""

    def __init__(self, config: DiTConfig, device: torch.device | str | None = None) -> None:
        super().__init__()
        self.kind = config.rope_type
        n = config.rope_freqs
        with torch.device(device or "cpu"):
            freqs = (
                mmrope_inverse_frequencies(2 * n)
                if self.kind == "mmrope3d"
                else pixel_frequencies(n)
            )
        self.rope = _Frequencies(freqs)

    @property
    def rotates_text(self) -> bool:
        return self.kind == "mmrope3d"

    def _axis_positions(self, size: int, offset: int) -> torch.Tensor:
        device = self.rope.freqs.device
        if self.kind == "mmrope3d":
            return torch.arange(size, dtype=torch.float32, device=device) + offset
        return torch.linspace(-1.0, 1.0, size, dtype=torch.float32, device=device)

    def video_angles(self, window: tuple[int, int, int], text_len: int) -> torch.Tensor:
        """Angles (l, p) of a window of shape (t, h, w), tokens in row-major order."""
        freqs = self.rope.freqs.float()
        t, h, w = window
        offsets = (text_len if self.kind == "mmrope3d" else 0, 0, 0)
        per_axis = [
            torch.outer(self._axis_positions(n, o), freqs) for n, o in zip(window, offsets)
        ]  # 3 x (n_axis, f)
        f = freqs.numel()
        grid = torch.cat(
            [
                per_axis[0][:, None, None, :].expand(t, h, w, f),
                per_axis[1][None, :, None, :].expand(t, h, w, f),
                per_axis[2][None, None, :, :].expand(t, h, w, f),
            ],
            dim=-1,
        )  # (t, h, w, 3f)
        return grid.reshape(t * h * w, 3 * f)

    def text_angles(self, text_len: int) -> torch.Tensor:
        """Angles (l, p) of text tokens at positions (i, i, i) (``mmrope3d`` only)."""
        freqs = self.rope.freqs.float()
        angles = torch.outer(self._axis_positions(text_len, 0), freqs)  # (l, f)
        return angles.repeat(1, 3)


def rotation_factors(angles: torch.Tensor, head_dim: int) -> torch.Tensor:
    """Unit complex factors (l, 1, head_dim / 2) for (l, p) angles; pairs past ``p`` get 1.

    Computed once per window plan and reused by every block (the angles do not depend on the
    block), so the per-block cost of RoPE is one complex multiply.
    """
    pairs = angles.shape[-1]
    cos, sin = angles.cos(), angles.sin()
    if pairs < head_dim // 2:  # unrotated tail: cos 1, sin 0
        cos = torch.cat((cos, cos.new_ones(cos.shape[0], head_dim // 2 - pairs)), dim=-1)
        sin = torch.cat((sin, sin.new_zeros(sin.shape[0], head_dim // 2 - pairs)), dim=-1)
    return torch.complex(cos, sin)[:, None, :]


def rotate(x: torch.Tensor, factors: torch.Tensor) -> torch.Tensor:
    """Rotate interleaved pairs of ``x`` (..., l, n, k) by :func:`rotation_factors` (l, 1, k/2).

    Evaluated in float32 (positions above 256 are not exact in bf16) and cast back.
    """
    xc = torch.view_as_complex(x.float().unflatten(-1, (-1, 2)).contiguous())
    return torch.view_as_real(xc * factors).flatten(-2).to(x.dtype)


def apply_rotary(x: torch.Tensor, angles: torch.Tensor) -> torch.Tensor:
    """Rotate interleaved pairs of the first ``2p`` dims of ``x`` (..., l, n, k) by (l, p) angles.

    Evaluated in float32 (positions above 256 are not exact in bf16) and cast back.
    """
    return rotate(x, rotation_factors(angles, x.shape[-1]))
