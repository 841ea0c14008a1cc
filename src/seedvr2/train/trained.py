"""A network under training: its wrapped module, its optimiser and its EMA copy.

Under FSDP the EMA copy is sharded like the network, so the EMA update is shard-local. A network
with frozen weights (a LoRA base) shares them with its EMA copy, which then costs only the
trainable weights, and only those are checkpointed (unless ``save_frozen``: weights frozen in a
full network, ``model.frozen``, are saved so that its checkpoints export whole).
"""

from __future__ import annotations

import copy
from collections.abc import Sequence

from torch import nn

from .config import OptimConfig, RunConfig
from .distributed import DistContext, unwrap, wrap
from .ema import EMA
from .networks import frozen
from .optim import Batch, LossFn, Updater


class TrainedNetwork:
    """``module`` (DDP/FSDP-wrapped), its :class:`Updater` and EMA, checkpointed by name."""

    def __init__(
        self,
        name: str,
        module: nn.Module,
        optim: OptimConfig,
        run: RunConfig,
        ctx: DistContext,
        ema_decay: float | None,
        save_frozen: bool = False,
    ) -> None:
        self.name = name
        self.ema_module = None
        self.ema = None
        params = list(module.parameters())
        self.trainable = frozenset(n for n, p in module.named_parameters() if p.requires_grad)
        self.partial = len(self.trainable) < len(params) and not save_frozen
        if ema_decay is not None:
            shared = {id(p): p for p in params if not p.requires_grad}  # not copied
            self.ema_module = wrap(frozen(copy.deepcopy(module, shared)), ctx, trainable=False)
            self.ema = EMA(self.ema_module, ema_decay)
        self.module = wrap(module, ctx)
        self.updater = Updater(name, self.module, optim, run, ctx)

    @property
    def averaged(self) -> nn.Module:
        """The EMA weights when kept, else the trained ones (for previews and teachers)."""
        return self.ema_module if self.ema_module is not None else self.module

    @property
    def inner(self) -> nn.Module:
        """The module without its DDP wrapper."""
        return unwrap(self.module)

    def register(self, stage: object) -> None:
        """Add the network, its EMA and its optimiser to a stage's checkpointed state."""
        stage.networks[self.name] = self.module
        if self.ema_module is not None:
            stage.networks[f"{self.name}_ema"] = self.ema_module
        stage.updaters[self.name] = self.updater
        if self.partial:
            for name in (self.name, f"{self.name}_ema"):
                stage.saved_keys[name] = self.trainable

    def step(self, step: int, batches: Sequence[Batch], loss_fn: LossFn) -> dict[str, float]:
        """One optimiser step, then the EMA update (skipped steps leave the EMA alone)."""
        metrics = self.updater.step(step, batches, loss_fn)
        if self.ema is not None and not metrics[f"{self.name}/skipped"]:
            self.ema.update(self.inner)
        return metrics
