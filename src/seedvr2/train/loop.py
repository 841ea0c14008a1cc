"""The training loop shared by every stage: data, steps, logging, previews, checkpoints, resume.

``run(config_path, overrides)`` is the whole of ``seedvr2 train CONFIG``: it reads the config,
joins the ``torchrun`` process group when ``run.parallel`` asks for one, builds the stage, resumes
from the newest checkpoint in ``output_dir/checkpoints`` when there is one, and trains to
``run.steps``. A resumed run ends bit-identical to an uninterrupted one: all randomness is keyed
by (seed, step, sample) (:mod:`seedvr2.train.rng`) and the checkpoint restores the networks,
optimisers, EMA, stage progress, data position (the step) and RNG states.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from pathlib import Path

import yaml
from torch.utils.data import Dataset

from seedvr2.errors import CheckpointError

from .checkpoint import (
    CheckpointManager,
    load_checkpoint,
    load_model_state,
    load_optimizer_state,
    model_state,
    optimizer_state,
    rng_state,
    set_rng_state,
)
from .config import TrainConfig, load_config
from .data import (
    PREVIEW_STEP,
    StepSampler,
    build_clip_dataset,
    crop_multiple,
    make_loader,
)
from .distributed import (
    DistContext,
    all_gather_objects,
    barrier,
    init_distributed,
    mean_over_ranks,
    shutdown,
)
from .latent_cache import open_cache
from .logger import MetricLogger
from .preview import write_preview
from .stage import Batch, Stage

log = logging.getLogger(__name__)
PREVIEW_CLIPS = 2  # clips in the sample videos


def build_stage(cfg: TrainConfig, ctx: DistContext) -> Stage:
    """The stage ``cfg.stage`` names (imported on demand: each pulls in its own models)."""
    if cfg.stage == "diffusion":
        from .pretrain import DiffusionStage as stage_class
    elif cfg.stage == "distill":
        from .distill import DistillStage as stage_class
    elif cfg.stage == "fidelity":
        from .fidelity import FidelityStage as stage_class
    elif cfg.stage == "adversarial":
        from .adversarial import AdversarialStage as stage_class
    else:
        from .vae_train import VAEStage as stage_class
    return stage_class(cfg, ctx)


class Trainer:
    """Runs one stage from its current step to ``run.steps``."""

    def __init__(self, cfg: TrainConfig, ctx: DistContext) -> None:
        self.cfg, self.ctx = cfg, ctx
        self.out = Path(cfg.output_dir)
        self.checkpoints = CheckpointManager(self.out / "checkpoints", cfg.run.keep_last)
        self.stage = build_stage(cfg, ctx)
        self.step = 0
        latest = self.checkpoints.latest()
        if latest is not None:
            self.restore(latest)

    # ---------------------------------------------------------------- data

    def dataset(self) -> Dataset:
        """Cached latents when ``data.cache`` is set, else decoded, cropped, degraded media."""
        if self.cfg.data.cache is not None:
            return open_cache(self.cfg, self.stage.condition_resize)
        return build_clip_dataset(self.cfg, self.stage.frame_step, self.stage.needs_lq,
                                  self.stage.condition_resize)

    def sampler(self, start: int, end: int, rank: int) -> StepSampler:
        multiple = crop_multiple(self.stage.crop_multiple, self.cfg.data.scale)
        accum = self.cfg.run.grad_accum if end - start > 1 else 1
        return StepSampler(self.cfg.data, self.cfg.seed, start, end, accum, rank,
                           self.ctx.world_size, multiple)

    def batches(self, dataset: Dataset) -> Iterator[Batch]:
        sampler = self.sampler(self.step, self.cfg.run.steps, self.ctx.rank)
        return iter(make_loader(dataset, sampler, self.cfg.data.workers))

    def preview_batch(self, dataset: Dataset) -> Batch:
        """A fixed batch (the last phase's shape, rank 0's keys) for sample videos.

        One clip with cached latents: cached clips of a batch may differ in size.
        """
        keys = next(iter(self.sampler(PREVIEW_STEP, PREVIEW_STEP + 1, rank=0)))
        clips = 1 if self.cfg.data.cache is not None else PREVIEW_CLIPS
        return next(iter(make_loader(dataset, [keys[:clips]], workers=0)))

    # ---------------------------------------------------------------- checkpoints

    def save(self) -> None:
        """Gather full states (collectives on every rank), write on rank 0."""
        stage = self.stage
        payload = {
            "config": self.cfg.to_dict(),
            "stage": self.cfg.stage,
            "step": self.step,
            "models": {name: model_state(m, stage.saved_keys.get(name))
                       for name, m in stage.networks.items()},
            "optimizers": {name: optimizer_state(u.module, u.optimizer)
                           for name, u in stage.updaters.items()},
            "model_configs": stage.model_configs,
            "stage_state": stage.state_dict(),
            "rng": all_gather_objects(rng_state(), self.ctx),
        }
        if self.ctx.is_main:
            path = self.checkpoints.save(self.step, payload)
            log.info("step %d: saved %s", self.step, path)
        barrier(self.ctx)

    def restore(self, path: Path) -> None:
        payload = load_checkpoint(path)
        if payload.get("stage") != self.cfg.stage:
            raise CheckpointError(f"{path} is a {payload.get('stage')!r} checkpoint; this run "
                                  f"trains {self.cfg.stage!r} (use another output_dir)")
        stage = self.stage
        for name, module in stage.networks.items():
            load_model_state(module, payload["models"][name], f"{path} [{name}]",
                             stage.saved_keys.get(name))
        for name, updater in stage.updaters.items():
            load_optimizer_state(updater.module, updater.optimizer, payload["optimizers"][name])
        stage.load_state_dict(payload["stage_state"])
        states = payload["rng"]
        if len(states) == self.ctx.world_size:
            set_rng_state(states[self.ctx.rank])
        else:  # keyed draws do not need them; only a global-RNG user would notice
            log.info("%s was written by %d processes, this run has %d: global RNG states not "
                     "restored", path, len(states), self.ctx.world_size)
        self.step = int(payload["step"])
        log.info("resumed from %s at step %d", path, self.step)

    # ---------------------------------------------------------------- loop

    def fit(self) -> Path | None:
        """Train to ``run.steps``; returns the last checkpoint."""
        cfg, ctx, run = self.cfg, self.ctx, self.cfg.run
        if self.step >= run.steps:
            log.info("nothing to do: checkpoint step %d >= run.steps %d", self.step, run.steps)
            return self.checkpoints.latest()
        if ctx.is_main:
            self.out.mkdir(parents=True, exist_ok=True)
            (self.out / "config.yaml").write_text(yaml.safe_dump(cfg.to_dict(), sort_keys=False))
        logger = MetricLogger(self.out, ctx.is_main, self.step)
        dataset = self.dataset()
        preview = self.preview_batch(dataset) if run.sample_every else None
        batches = self.batches(dataset)
        window: dict[str, float] = {}
        counted, started = 0, time.perf_counter()
        while self.step < run.steps:
            micro = [next(batches) for _ in range(run.grad_accum)]
            metrics = self.stage.train_step(self.step, micro)
            self.step += 1
            for key, value in metrics.items():
                window[key] = window.get(key, 0.0) + value
            counted += 1
            if self.step % run.log_every == 0 or self.step == run.steps:
                means = mean_over_ranks({k: v / counted for k, v in window.items()}, ctx)
                means["time/step_s"] = (time.perf_counter() - started) / counted
                logger.log(self.step, means)
                window, counted, started = {}, 0, time.perf_counter()
            if preview is not None and self.step % run.sample_every == 0:
                self.write_preview(preview)
            if self.step % run.checkpoint_every == 0 or self.step == run.steps:
                self.save()
        logger.close()
        return self.checkpoints.latest()

    def write_preview(self, batch: Batch) -> None:
        lq, output, hq = self.stage.preview(batch)  # every rank: FSDP forwards are collective
        if self.ctx.is_main:
            path = write_preview(self.out / "samples", self.step, lq, output, hq)
            log.info("step %d: wrote %s", self.step, path)


def run(config_path: str | Path | None, overrides: list[str] | tuple[str, ...] = ()) -> Path | None:
    """Train the stage a YAML config describes (``seedvr2 train CONFIG key=value ...``).

    Args:
        config_path: the run's YAML file (``configs/train/*.yaml``); None uses defaults only.
        overrides: dotted ``section.key=value`` settings applied on top (values parsed as YAML).

    Returns:
        The newest checkpoint of the run.
    """
    cfg = load_config(config_path, overrides)
    ctx = init_distributed(cfg.run)
    try:
        last = Trainer(cfg, ctx).fit()
    except BaseException:
        shutdown(ctx, finished=False)
        raise
    shutdown(ctx)
    return last
