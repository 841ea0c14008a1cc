"""Exponential moving average of a network's weights (Polyak averaging).

``θ_ema ← d·θ_ema + (1 - d)·θ`` after every optimiser step. Decays: 0.9998 in the SeedVR
diffusion config (the default here), 0.995 in APT's adversarial stage (spec §1). No warm-up:
neither source uses one.
"""

from __future__ import annotations

from typing import Any, Literal

import torch
from torch import nn

Kind = Literal["parameters", "buffers"]


def _tensors(module: nn.Module, kind: Kind) -> dict[str, torch.Tensor]:
    named = module.named_parameters() if kind == "parameters" else module.named_buffers()
    return dict(named)


def _paired(
    first: nn.Module, second: nn.Module, kind: Kind
) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """``first``'s and ``second``'s tensors matched by name; both must have the same names."""
    ours, theirs = _tensors(first, kind), _tensors(second, kind)
    if ours.keys() != theirs.keys():
        only_first = sorted(ours.keys() - theirs.keys())[:5]
        only_second = sorted(theirs.keys() - ours.keys())[:5]
        raise ValueError(f"EMA and model {kind} differ: {only_first} vs {only_second}")
    return [(ours[name], theirs[name]) for name in ours]


class EMA:
    """Keeps the parameters of ``shadow`` as the moving average of a trained module's.

    The average lives in a module (typically a frozen ``copy.deepcopy`` of the trained one), so
    it can be sharded, evaluated and checkpointed like any network. Shadow and model may sit on
    different devices and dtypes (e.g. an FP32 average of a BF16 model): each update casts the
    model's values to the shadow's. Buffers (norm statistics, caches) are copied, not averaged.

    Args:
        shadow: the module holding the average, updated in place.
        decay: ``d`` in ``θ_ema ← d·θ_ema + (1 - d)·θ``.
    """

    def __init__(self, shadow: nn.Module, decay: float = 0.9998) -> None:
        if not 0.0 <= decay <= 1.0:
            raise ValueError(f"EMA decay must be in [0, 1], got {decay}")
        self.shadow = shadow
        self.decay = decay
        self.num_updates = 0

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        """One averaging step towards ``model``'s current weights."""
        for average, value in _paired(self.shadow, model, "parameters"):
            average.lerp_(value.detach().to(average.device, average.dtype), 1.0 - self.decay)
        self._copy_buffers(self.shadow, model)
        self.num_updates += 1

    @torch.no_grad()
    def copy_to(self, model: nn.Module) -> None:
        """Overwrite ``model``'s parameters and buffers with the average."""
        for average, value in _paired(self.shadow, model, "parameters"):
            value.copy_(average)
        self._copy_buffers(model, self.shadow)

    @staticmethod
    def _copy_buffers(target: nn.Module, source: nn.Module) -> None:
        for ours, theirs in _paired(target, source, "buffers"):
            ours.copy_(theirs)

    def state_dict(self) -> dict[str, Any]:
        """Decay, number of updates and the shadow's weights."""
        return {"decay": self.decay, "num_updates": self.num_updates,
                "shadow": self.shadow.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what :meth:`state_dict` returned (strict on the shadow's keys)."""
        self.shadow.load_state_dict(state["shadow"], strict=True)
        self.decay = float(state["decay"])
        self.num_updates = int(state["num_updates"])
