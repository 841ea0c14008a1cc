"""Optimisers and one optimiser step over accumulated micro-batches.

:class:`Updater` runs the loss of each micro-batch under autocast, accumulates gradients (syncing
them across processes only on the last micro-batch), clips the global norm, and skips the step,
with a warning naming the step and the network, when the loss or the gradient norm is NaN/inf.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Sequence
from typing import TypeVar

import torch
from torch import nn

from .config import OptimConfig, RunConfig
from .distributed import DistContext, any_rank, full_tensor, gradient_sync

log = logging.getLogger(__name__)
Batch = TypeVar("Batch")
Metrics = dict[str, torch.Tensor]  # scalars to log, by name
LossFn = Callable[[Batch], tuple[torch.Tensor, Metrics]]


def build_optimizer(params: list[nn.Parameter], cfg: OptimConfig) -> torch.optim.Optimizer:
    """AdamW / Adam / RMSProp (RMSProp's alpha = ``betas[1]``, APT's "Adam with beta1 = 0")."""
    if cfg.name == "rmsprop":
        return torch.optim.RMSprop(params, lr=cfg.lr, alpha=cfg.betas[1], eps=cfg.eps,
                                   weight_decay=cfg.weight_decay)
    make = torch.optim.AdamW if cfg.name == "adamw" else torch.optim.Adam
    return make(params, lr=cfg.lr, betas=cfg.betas, eps=cfg.eps, weight_decay=cfg.weight_decay)


def learning_rate(cfg: OptimConfig, step: int) -> float:
    """Linear warm-up to ``cfg.lr`` over ``cfg.warmup_steps``, then constant."""
    if cfg.warmup_steps <= 0:
        return cfg.lr
    return cfg.lr * min(1.0, (step + 1) / cfg.warmup_steps)


def autocast(run: RunConfig, device: torch.device) -> torch.autocast:
    """bf16 autocast when ``run.precision`` is bf16 (weights stay fp32)."""
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=run.precision == "bf16")


class Updater:
    """Optimiser step of one network (named in logs: ``dit``, ``generator``, ``discriminator``)."""

    def __init__(
        self,
        name: str,
        module: nn.Module,
        cfg: OptimConfig,
        run: RunConfig,
        ctx: DistContext,
    ) -> None:
        self.name, self.module, self.cfg, self.run, self.ctx = name, module, cfg, run, ctx
        self.params = [p for p in module.parameters() if p.requires_grad]
        self.optimizer = build_optimizer(self.params, cfg)
        self.skipped = 0

    def step(self, step: int, batches: Sequence[Batch], loss_fn: LossFn) -> dict[str, float]:
        """Accumulate ``loss_fn`` over ``batches`` and take one optimiser step.

        Returns the micro-batch means of the metrics ``loss_fn`` reports plus ``<name>/grad_norm``
        and ``<name>/skipped`` (1.0 when this step was skipped).
        """
        totals: dict[str, torch.Tensor] = {}
        finite_loss = True
        for i, batch in enumerate(batches):
            with gradient_sync(self.module, i == len(batches) - 1):
                with autocast(self.run, self.ctx.device):
                    loss, metrics = loss_fn(batch)
                finite_loss &= bool(torch.isfinite(loss.detach()))
                (loss / len(batches)).backward()
            for key, value in metrics.items():
                totals[key] = totals.get(key, 0) + value.detach().float() / len(batches)
        max_norm = self.run.grad_clip if self.run.grad_clip is not None else math.inf
        norm = float(full_tensor(torch.nn.utils.clip_grad_norm_(self.params, max_norm)))
        applied = not any_rank(not (finite_loss and math.isfinite(norm)), self.ctx)
        if applied:
            for group in self.optimizer.param_groups:
                group["lr"] = learning_rate(self.cfg, step)
            self.optimizer.step()
        else:
            self.skipped += 1
            cause = "loss" if not finite_loss else "gradient norm"
            log.warning("step %d: non-finite %s in %s; step skipped (%d so far)",
                        step, cause, self.name, self.skipped)
        self.optimizer.zero_grad(set_to_none=True)
        out = {key: float(value) for key, value in totals.items()}
        out[f"{self.name}/grad_norm"] = norm
        out[f"{self.name}/skipped"] = 0.0 if applied else 1.0
        return out
