"""Random draws of degradation parameters, all from one caller-seeded ``torch.Generator``.

A clip's parameters are drawn once; a drifting parameter then follows a clipped uniform random
walk over the frames (RealBasicVSR, spec §3 "Temporal consistency"), so neighbouring frames are
degraded alike without being identical.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TypeVar

import torch

from .config import Range

T = TypeVar("T")


def uniform(generator: torch.Generator, low: float, high: float) -> float:
    """One draw from ``U(low, high)``."""
    return low + (high - low) * float(torch.rand((), generator=generator))


def bernoulli(generator: torch.Generator, prob: float) -> bool:
    """True with probability ``prob`` (always consumes one draw, so later draws do not shift)."""
    return float(torch.rand((), generator=generator)) < prob


def choice(generator: torch.Generator, options: Sequence[T]) -> T:
    """One of ``options``, uniformly."""
    return options[int(torch.randint(len(options), (), generator=generator))]


def weighted_choice(generator: torch.Generator, probs: Mapping[str, float]) -> str:
    """A key of ``probs`` drawn with the given probabilities."""
    names = list(probs)
    weights = torch.tensor([probs[name] for name in names], dtype=torch.float64)
    return names[int(torch.multinomial(weights, 1, generator=generator))]


def walk(generator: torch.Generator, value_range: Range, frames: int, drift: bool) -> torch.Tensor:
    """Per-frame values ``(frames,)``: ``v_0 ~ U(low, high)``, ``v_{f+1} = clip(v_f + U(-s, s))``.

    ``s`` is ``value_range.drift``; without ``drift`` (or with ``s = 0``) all frames share ``v_0``.
    """
    low, high, step = value_range.low, value_range.high, value_range.drift
    start = uniform(generator, low, high)
    if not drift or step == 0 or frames == 1:
        return torch.full((frames,), start, dtype=torch.float64)
    steps = (torch.rand(frames - 1, generator=generator, dtype=torch.float64) * 2 - 1) * step
    values = [start]
    for delta in steps.tolist():  # sequential: each step is clipped before the next
        values.append(min(max(values[-1] + delta, low), high))
    return torch.tensor(values, dtype=torch.float64)
