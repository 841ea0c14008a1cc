"""Precomputed latents: written once, then trained from (clips of a batch may differ in size)."""

from __future__ import annotations

from pathlib import Path

import torch
from safetensors.torch import load_file

from seedvr2.train import run
from seedvr2.train.checkpoint import load_checkpoint
from seedvr2.train.data import SampleKey
from seedvr2.train.latent_cache import LatentCacheDataset, cache_latents
from train_support import make_media, tiny_config, write_config


def test_cached_latents_train_the_adversarial_stage(tmp_path: Path) -> None:
    media = make_media(tmp_path / "media")
    cache = tmp_path / "latents"
    cfg = tiny_config(media, tmp_path / "out", "adversarial", data={"cache": str(cache)},
                      run={"sample_every": 4})
    config = write_config(tmp_path / "run.yaml", cfg)
    cache_latents(config, count=6)
    files = sorted(cache.glob("*.safetensors"))
    assert len(files) == 6
    first = load_file(str(files[0]))
    assert first["x0"].shape == first["lq"].shape and first["x0"].shape[0] == 48
    dataset = LatentCacheDataset(cache, seed=0)
    video = dataset[SampleKey(0, 0, 0, frames=5, height=32, width=32)]
    assert video["key"].frames == 5 and video["x0"].shape[1] == 5  # the planned clip length
    last = run(config)
    models = load_checkpoint(last)["models"]
    assert all(torch.isfinite(v).all() for m in models.values() for v in m.values())
    assert (tmp_path / "out" / "samples" / "step_00000004.mp4").is_file()
