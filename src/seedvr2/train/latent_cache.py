"""Precomputed latents: encode samples of a run's data once, train from the files (optional).

SeedVR precomputes HQ/LQ latents and text embeddings (4x faster training; spec §1a "Data").
:func:`cache_latents` draws ``count`` samples spread over the run's clip schedule, encodes HQ and
degraded LQ with the run's codec and writes one safetensors file per clip to ``data.cache``.
Training with ``data.cache`` set then draws, for each sample key, a cached clip with the planned
frame count (any clip when none has it), so the images -> video schedule still holds; clips of a
batch may differ in size (the DiT takes packed clips). A cached LQ freezes one degradation draw:
cache more samples than there are HQ clips to keep several draws per clip (spec §7).

Each folder holds ``cache.json``, the source of its latents (codec, condition up-scale, data,
draw, the SHA-256 of the VAE weights and data manifest files, and a digest of the data's file
listing). A run refuses a cache whose codec or condition differs from its own, whose data
differs from the data the run names (files added or removed count), or that holds fewer
latents than it was written for; :func:`cache_latents` refuses to write into
a folder that holds other latents, so one folder never mixes two draws. ``data.extra_caches``
mixes caches of other data into a run (for example soft sources with clean degradations only):
each must match the run's codec and condition, and its own ``cache.json`` says what it holds.

Dimension key: ``c`` latent channels, ``t h w`` latent grid.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file
from torch.utils.data import Dataset

from seedvr2.digests import file_sha256
from seedvr2.errors import ConfigError

from . import rng
from .config import TrainConfig, load_config
from .data import SampleKey, build_clip_dataset, crop_multiple, plan_shape
from .latents import build_codec
from .networks import resolve_checkpoint, starting_dit, weights_file
from .optim import autocast
from .sources import listing_sha256

log = logging.getLogger(__name__)

MANIFEST = "cache.json"
# data fields that decide which HQ clips and LQ draws a cache holds
DRAWN = ("roots", "paired", "sequences", "manifest", "phases", "scale", "degradation")


@dataclass
class LatentItems:
    """A micro-batch of cached clips (shapes may differ)."""

    x0: list[torch.Tensor]  # per clip (c, t, h, w) HQ latent
    lq: list[torch.Tensor]  # per clip (c, t, h, w) LQ latent
    text: list[torch.Tensor | None]
    keys: list[SampleKey]  # frames/height/width: the cached clip's pixel shape


class LatentCacheDataset(Dataset):
    """Cached clips of one or more folders by :class:`SampleKey` (a keyed draw among all their
    clips of the planned length: each folder weighs by its number of files)."""

    def __init__(self, folders: list[Path], seed: int) -> None:
        self.files = [f for folder in folders for f in sorted(Path(folder).glob("*.safetensors"))]
        if not self.files:
            raise ConfigError(f"data.cache: no *.safetensors latents in {[str(f) for f in folders]}")
        self.seed = seed
        self.meta = [json.loads(_metadata(p)["sample"]) for p in self.files]
        self.by_frames: dict[int, list[int]] = {}
        for i, meta in enumerate(self.meta):
            self.by_frames.setdefault(meta["frames"], []).append(i)

    def __getitem__(self, key: SampleKey) -> dict:
        g = rng.generator(self.seed, "data", key.step, key.micro, key.index)
        options = self.by_frames.get(key.frames, range(len(self.files)))
        index = options[int(torch.randint(len(options), (), generator=g))]
        tensors, meta = load_file(str(self.files[index])), self.meta[index]
        key = key._replace(frames=meta["frames"], height=meta["height"], width=meta["width"])
        return dict(x0=tensors["x0"], lq=tensors["lq"], text=tensors.get("text"), key=key)

    @staticmethod
    def collate(samples: list[dict]) -> LatentItems:
        return LatentItems([s["x0"] for s in samples], [s["lq"] for s in samples],
                           [s["text"] for s in samples], [s["key"] for s in samples])


def cache_source(cfg: TrainConfig, condition_resize: str) -> dict[str, Any]:
    """What a run's cached latents depend on: the codec, the DiT's condition up-scale, the data,
    the contents of the files they name (the VAE weights, the data manifest) and the listing of
    the data's files (:func:`listing_sha256`), so that a file replaced at the same path, or
    media added to or removed from a data folder, is noticed."""
    plain = cfg.to_dict()
    data = {name: plain["data"][name] for name in DRAWN}
    if cfg.data.still_motion:  # left out at 0, so caches written before it existed still match
        data["still_motion"] = cfg.data.still_motion
    if cfg.data.manifest is not None:
        data["manifest_sha256"] = _digest(Path(cfg.data.manifest))
    data["files_sha256"] = listing_sha256((*cfg.data.roots, *cfg.data.paired), cfg.data.manifest)
    return {"latent": {**plain["latent"], "sha256": _codec_digest(cfg)},
            "condition_resize": condition_resize, "data": data}


def _codec_digest(cfg: TrainConfig) -> str | None:
    """SHA-256 of the weights file the codec loads (None: no file)."""
    spec = cfg.latent.vae_checkpoint
    if cfg.latent.kind != "vae" or spec is None:
        return None
    what = "latent.vae_checkpoint"
    return _digest(weights_file(spec, "vae", what) or resolve_checkpoint(spec, what))


def _digest(path: Path) -> str | None:
    return file_sha256(path) if path.is_file() else None


def open_cache(cfg: TrainConfig, condition_resize: str) -> LatentCacheDataset:
    """``data.cache`` and ``data.extra_caches`` for a run, after checking that their latents are
    the ones the run means (the extra caches' data is their own: only codec and condition)."""
    folders = [Path(str(cfg.data.cache)), *map(Path, cfg.data.extra_caches)]
    wanted = cache_source(cfg, condition_resize)
    names_data = bool(cfg.data.roots or cfg.data.paired or cfg.data.manifest)
    for index, folder in enumerate(folders):
        checked = ["latent", "condition_resize"] + (["data"] if names_data and index == 0 else [])
        _check_cache(folder, "data.cache" if index == 0 else "data.extra_caches", wanted, checked)
    return LatentCacheDataset(folders, cfg.seed)


def _check_cache(folder: Path, key: str, wanted: dict[str, Any], checked: list[str]) -> None:
    """Refuse a cache without a manifest, of another source (``checked`` fields) or partial."""
    stored = _read_manifest(folder)
    if stored is None:
        raise ConfigError(f"{key}: {folder} has no {MANIFEST}, so what its latents were "
                          "drawn from is unknown; write the cache with seedvr2.train."
                          "cache_latents (a new folder)")
    differing = [name for name in checked if stored["source"][name] != wanted[name]]
    if differing:
        raise ConfigError(
            f"{key}: the latents in {folder} were made with other {', '.join(differing)} "
            f"than this run's ({json.dumps({k: stored['source'][k] for k in differing})}; a "
            "weights or manifest file with other contents at the same path counts, and so do "
            "files added to, removed from or resized in the data folders: "
            f"{_differing_keys(stored['source'], wanted, differing)} differ); point it at a "
            "cache of this run's data, or write one with cache_latents")
    found = len(list(folder.glob("*.safetensors")))
    if found != stored["count"]:
        raise ConfigError(f"{key}: {folder} holds {found} of the {stored['count']} latents "
                          "cache_latents was asked for (it stopped early?); run the same "
                          "cache_latents call again to complete it")


def _differing_keys(stored: dict[str, Any], wanted: dict[str, Any], fields: list[str]) -> str:
    """The keys (of ``fields`` that are sections: their sub-keys) whose values differ; a key
    only one side has counts."""
    keys = []
    for field in fields:
        old, new = stored[field], wanted[field]
        if not (isinstance(old, dict) and isinstance(new, dict)):
            keys.append(field)
            continue
        keys += [f"{field}.{k}" for k in sorted(old.keys() | new.keys()) if old.get(k) != new.get(k)]
    return ", ".join(keys)


def _read_manifest(folder: Path) -> dict[str, Any] | None:
    path = folder / MANIFEST
    return json.loads(path.read_text()) if path.is_file() else None


def _claim_folder(folder: Path, manifest: dict[str, Any]) -> None:
    """Write ``manifest`` into ``folder`` unless the folder holds latents of another draw."""
    stored = _read_manifest(folder)
    if stored is None and any(folder.glob("*.safetensors")):
        raise ConfigError(f"data.cache: {folder} already holds latents without a {MANIFEST}; "
                          "choose an empty folder (nothing there is overwritten)")
    if stored is not None and stored != manifest:
        raise ConfigError(f"data.cache: {folder} holds latents of another config or count "
                          f"({stored}); choose another folder (nothing there is overwritten)")
    folder.mkdir(parents=True, exist_ok=True)
    (folder / MANIFEST).write_text(json.dumps(manifest, indent=1))


def _metadata(path: Path) -> dict[str, str]:
    with safe_open(str(path), framework="pt") as handle:
        return handle.metadata()


def cache_latents(
    config_path: str | Path | None, overrides: list[str] | tuple[str, ...] = (), count: int = 1000
) -> Path:
    """Encode ``count`` samples of a run config's data into its ``data.cache`` folder."""
    cfg: TrainConfig = load_config(config_path, overrides)
    if cfg.data.cache is None:
        raise ConfigError("data.cache: set the folder the latents are written to")
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    codec = build_codec(cfg.latent, device)
    trained = starting_dit(cfg.model.dit, cfg.model.init, "model.init", cfg.seed, 0)
    dataset = build_clip_dataset(cfg, codec.temporal, True, trained.config.condition_resize)
    multiple = crop_multiple(codec.spatial * 2, cfg.data.scale)
    folder = Path(cfg.data.cache)
    source = cache_source(cfg, trained.config.condition_resize)
    _claim_folder(folder, {"source": source, "seed": cfg.seed, "steps": cfg.run.steps,
                           "count": count})
    for n in range(count):
        step = n * cfg.run.steps // count  # spread over the schedule
        key = SampleKey(step, 0, n, *plan_shape(cfg.data.phases, cfg.seed, step, 0, multiple))
        sample = dataset[key]
        with torch.no_grad(), autocast(cfg.run, device):
            x0 = codec.encode(sample["hq"][None].to(device))[0].float().cpu()
            lq = codec.encode(sample["lq"][None].to(device))[0].float().cpu()
        tensors = {"x0": x0.contiguous(), "lq": lq.contiguous()}
        if sample["text"] is not None:  # a per-item embedding from the manifest
            tensors["text"] = sample["text"].contiguous()
        meta = {"frames": key.frames, "height": key.height, "width": key.width}
        save_file(tensors, str(folder / f"{n:08d}.safetensors"),
                  metadata={"sample": json.dumps(meta)})
    log.info("wrote %d cached latents to %s", count, folder)
    return folder

