"""Causal 3-D convolution and the cache that carries it across temporal chunks (spec §5.2, §5.4).

A causal conv has no temporal zero padding: it sees its first input frame replicated
``kernel_t - 1`` times in front, so output frame i depends only on input frames <= i. A clip can
then be processed in consecutive temporal chunks: each conv keeps the last ``kernel_t - stride_t``
frames of its (extended) input and puts them in front of the next chunk instead of the replicated
first frame. Chunk by chunk, the result equals processing the whole clip at once (the official
``MemoryState`` slicing, without state stored in the modules).

Dimension key: ``b`` batch, ``c`` channels, ``t`` frames, ``h w`` rows and columns.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from enum import Enum, auto

import torch
from torch import nn


class ChunkPhase(Enum):
    """Where a chunk sits in its clip."""

    FIRST = auto()  # the first chunk: convs replicate the first frame, as for a whole clip
    LATER = auto()  # a later chunk: convs continue from the frames kept by the previous chunk


class CausalCache:
    """Frames each causal conv keeps from one temporal chunk for the next one."""

    def __init__(self) -> None:
        self.phase = ChunkPhase.FIRST
        self._tails: dict[nn.Module, torch.Tensor] = {}

    def continue_from(self, conv: nn.Module, x: torch.Tensor) -> torch.Tensor:
        """The frames ``conv`` kept from the previous chunk (``x``: this chunk's input to it)."""
        return self._tails[conv]

    def keep(self, conv: nn.Module, frames: torch.Tensor) -> None:
        """Store the last input frames of ``conv`` for the next chunk (copied: frees the input)."""
        self._tails[conv] = frames.clone()


def run_in_chunks(
    step: Callable[[torch.Tensor, CausalCache], torch.Tensor],
    chunks: Sequence[torch.Tensor],  # each (b, c, t_i, h, w), consecutive in time
) -> torch.Tensor:  # (b, c', sum of t_i', h', w')
    """Run ``step`` over consecutive chunks of one clip, carrying a :class:`CausalCache`."""
    cache = CausalCache()
    outputs = []
    for chunk in chunks:
        outputs.append(step(chunk, cache))
        cache.phase = ChunkPhase.LATER
    return torch.cat(outputs, dim=2)


class CausalConv3d(nn.Conv3d):
    """Conv3d, causal in time (first-frame replication), zero-padded in space.

    ``spatial_padding`` defaults to ``kernel // 2`` ("same"); downsamplers pass 0 and pad
    asymmetrically themselves.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int | tuple[int, int, int],
        stride: int | tuple[int, int, int] = 1,
        spatial_padding: int | None = None,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        kt, kh, _ = (kernel_size,) * 3 if isinstance(kernel_size, int) else kernel_size
        pad = kh // 2 if spatial_padding is None else spatial_padding
        super().__init__(
            in_channels, out_channels, kernel_size, stride=stride, padding=(0, pad, pad),
            device=device, dtype=dtype,
        )
        self.head_frames = kt - 1  # replicated copies of frame 0 in front of the clip
        self.tail_frames = kt - self.stride[0]  # frames carried to the next chunk

    def forward(
        self,
        x: torch.Tensor,  # (b, c, t, h, w)
        cache: CausalCache | None = None,  # None: x is a whole clip
    ) -> torch.Tensor:  # (b, c', t', h', w')
        if self.head_frames:
            if cache is None or cache.phase is ChunkPhase.FIRST:
                head = torch.cat([x[:, :, :1]] * self.head_frames, dim=2)
            else:
                head = cache.continue_from(self, x)
            x = torch.cat([head, x], dim=2)  # (b, c, head + t, h, w)
        if cache is not None and self.tail_frames:
            # Chunks must end where a strided window ends, or the next chunk would misalign.
            assert (x.shape[2] - self.kernel_size[0]) % self.stride[0] == 0, x.shape
            cache.keep(self, x[:, :, -self.tail_frames :])
        return self._convolve(x)

    def _convolve(self, x: torch.Tensor) -> torch.Tensor:
        if (
            x.device.type == "cpu"
            and x.dtype == torch.float32
            and not torch.is_grad_enabled()
            and torch.backends.mkldnn.is_available()
            and torch.backends.mkldnn.enabled
        ):
            # ATen sends narrow inputs (batch * channels * frames * rows <= 20480, e.g. 16
            # channels) to its single-threaded im2col kernel, about 3x slower than oneDNN; wide
            # ones already take this same oneDNN kernel.
            return torch.mkldnn_convolution(
                x, self.weight, self.bias, self.padding, self.stride, self.dilation, self.groups
            )
        return super().forward(x)
