"""Counter-based randomness: every random draw is keyed by (run seed, stream, step, sample).

A sample's crop, degradation, noise and timesteps depend only on its key, never on which process
or data worker handled it or on how many draws came before. This is what makes a resumed run
bit-identical to an uninterrupted one and a 2-process DDP run equal to one process with the same
global batch.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
import torch

Stream = Literal["shape", "data", "noise", "init", "sample"]
_STREAMS: dict[str, int] = {"shape": 1, "data": 2, "noise": 3, "init": 4, "sample": 5}


def derive_seed(seed: int, stream: Stream, *counters: int) -> int:
    """A 63-bit seed mixed from the run seed, a named stream and integer counters."""
    entropy = [seed & 0xFFFFFFFF, seed >> 32, _STREAMS[stream], *counters]
    return int(np.random.SeedSequence(entropy).generate_state(1, dtype=np.uint64)[0] >> 1)


def generator(
    seed: int, stream: Stream, *counters: int, device: torch.device | str = "cpu"
) -> torch.Generator:
    """A fresh :class:`torch.Generator` on ``device`` seeded by :func:`derive_seed`."""
    return torch.Generator(device=device).manual_seed(derive_seed(seed, stream, *counters))
