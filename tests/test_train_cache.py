"""Precomputed latents: written once, then trained from (clips of a batch may differ in size)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from model_fixtures import write_tiny_model
from seedvr2.errors import ConfigError, InputError
from seedvr2.train import run
from seedvr2.train.checkpoint import load_checkpoint
from seedvr2.train.config import load_config
from seedvr2.train.data import SampleKey
from seedvr2.train.latent_cache import LatentCacheDataset, cache_latents, open_cache
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
    dataset = LatentCacheDataset([cache], seed=0)
    video = dataset[SampleKey(0, 0, 0, frames=5, height=32, width=32)]
    assert video["key"].frames == 5 and video["x0"].shape[1] == 5  # the planned clip length
    last = run(config)
    models = load_checkpoint(last)["models"]
    assert all(torch.isfinite(v).all() for m in models.values() for v in m.values())
    assert (tmp_path / "out" / "samples" / "step_00000004.mp4").is_file()


def test_a_cache_is_used_only_by_runs_of_its_data_and_never_overwritten(tmp_path: Path) -> None:
    media = make_media(tmp_path / "media")
    cache = tmp_path / "latents"
    cfg = tiny_config(media, tmp_path / "out", "fidelity", data={"cache": str(cache)})
    config = write_config(tmp_path / "run.yaml", cfg)
    cache_latents(config, count=3)
    assert json.loads((cache / "cache.json").read_text())["count"] == 3
    written = {p.name: p.read_bytes() for p in cache.iterdir()}
    cache_latents(config, count=3)  # the same draw again: allowed, the same files
    assert {p.name: p.read_bytes() for p in cache.iterdir()} == written

    with pytest.raises(ConfigError, match="another config or count"):
        cache_latents(config, count=5)
    other = write_config(tmp_path / "other.yaml", {**cfg, "data": {**cfg["data"], "scale": 4}})
    with pytest.raises(ConfigError, match="another config or count"):
        cache_latents(other, count=3)
    assert {p.name: p.read_bytes() for p in cache.iterdir()} == written

    with pytest.raises(ConfigError, match="other data"):  # the run names other LQ than cached
        run(other)
    sharp = {**cfg["model"], "dit": {**cfg["model"]["dit"], "condition_resize": "bicubic"}}
    with pytest.raises(ConfigError, match="other condition_resize"):
        run(write_config(tmp_path / "sharp.yaml", {**cfg, "model": sharp}))
    (cache / "00000002.safetensors").unlink()  # as if cache_latents had stopped early
    with pytest.raises(ConfigError, match="holds 2 of the 3 latents"):
        run(config)
    cache_latents(config, count=3)  # the same call completes it
    no_roots = {**cfg["data"]}
    del no_roots["roots"]  # a run that names no data trains on the cache as it is
    assert run(write_config(tmp_path / "bare.yaml", {**cfg, "data": no_roots})).is_file()


def test_a_cache_records_still_motion_only_where_it_is_set(tmp_path: Path) -> None:
    """Caches written before ``data.still_motion`` existed still serve runs without it; a run
    whose stills pan is refused a cache whose stills did not, and can write its own."""
    media = make_media(tmp_path / "media")
    cache = tmp_path / "latents"
    cfg = tiny_config(media, tmp_path / "out", "fidelity", data={"cache": str(cache)})
    cache_latents(write_config(tmp_path / "run.yaml", cfg), count=3)
    assert "still_motion" not in json.loads((cache / "cache.json").read_text())["source"]["data"]
    panning = {**cfg, "data": {**cfg["data"], "still_motion": 2}}
    with pytest.raises(ConfigError, match="other data"):
        run(write_config(tmp_path / "pans.yaml", panning))
    moved = {**panning, "data": {**panning["data"], "cache": str(tmp_path / "pans")}}
    cache_latents(write_config(tmp_path / "moved.yaml", moved), count=3)
    source = json.loads((tmp_path / "pans" / "cache.json").read_text())["source"]["data"]
    assert source["still_motion"] == 2
    with pytest.raises(ConfigError, match="still_motion"):
        load_config(write_config(tmp_path / "bad.yaml",
                                 {**cfg, "data": {**cfg["data"], "still_motion": -1}}))


def test_latents_without_a_manifest_are_refused_and_kept(tmp_path: Path) -> None:
    media = make_media(tmp_path / "media")
    cache = tmp_path / "latents"
    cache.mkdir()
    stray = cache / "00000000.safetensors"
    save_file({"x0": torch.zeros(48, 1, 8, 8), "lq": torch.zeros(48, 1, 8, 8)}, str(stray),
              metadata={"sample": json.dumps({"frames": 1, "height": 32, "width": 32})})
    before = stray.read_bytes()
    config = write_config(tmp_path / "run.yaml", tiny_config(
        media, tmp_path / "out", "fidelity", data={"cache": str(cache)}))
    with pytest.raises(ConfigError, match="without a cache.json"):
        cache_latents(config, count=2)
    with pytest.raises(ConfigError, match="no cache.json"):
        run(config)
    assert stray.read_bytes() == before and sorted(cache.iterdir()) == [stray]


def test_extra_caches_mix_in_other_data_of_the_same_codec(tmp_path: Path) -> None:
    media = make_media(tmp_path / "media")
    own, soft, coarse = tmp_path / "own", tmp_path / "soft", tmp_path / "coarse"
    cfg = tiny_config(media, tmp_path / "out", "fidelity", data={"cache": str(own)})
    cache_latents(write_config(tmp_path / "own.yaml", cfg), count=3)
    clean = {**cfg["data"], "cache": str(soft), "degradation": [{"clean": "bicubic", "scale": 2}]}
    cache_latents(write_config(tmp_path / "soft.yaml", {**cfg, "data": clean}), count=4)
    mixed = write_config(tmp_path / "mixed.yaml",
                         {**cfg, "data": {**cfg["data"], "extra_caches": [str(soft)]}})

    dataset = open_cache(load_config(mixed), "bicubic_antialias")  # other data: accepted
    assert len(dataset.files) == 7
    stored = {f.parent.name: [] for f in dataset.files}
    for f in dataset.files:
        stored[f.parent.name].append(load_file(str(f))["lq"])
    drawn = {name for i in range(40)
             for sample in [dataset[SampleKey(i, 0, i, frames=1, height=32, width=32)]]
             for name, lqs in stored.items() if any(torch.equal(sample["lq"], x) for x in lqs)}
    assert drawn == {"own", "soft"}  # both caches are drawn from
    assert run(mixed).is_file()

    other_codec = {**cfg, "latent": {"kind": "pixel_unshuffle", "factor": 2},
                   "data": {**cfg["data"], "cache": str(coarse)}}
    cache_latents(write_config(tmp_path / "coarse.yaml", other_codec), count=2)
    with pytest.raises(ConfigError, match="data.extra_caches: the latents in .* other latent"):
        run(write_config(tmp_path / "bad.yaml", {**cfg, "output_dir": str(tmp_path / "bad"),
                         "data": {**cfg["data"], "extra_caches": [str(coarse)]}}))
    with pytest.raises(ConfigError, match="names a folder twice"):
        load_config(write_config(tmp_path / "twice.yaml",
                                 {**cfg, "data": {**cfg["data"], "extra_caches": [str(own)]}}))
    alone = {k: v for k, v in cfg["data"].items() if k != "cache"}
    with pytest.raises(ConfigError, match="set data.cache too"):
        load_config(write_config(tmp_path / "alone.yaml",
                                 {**cfg, "data": {**alone, "extra_caches": [str(soft)]}}))


def test_a_cache_notices_a_vae_file_or_manifest_changed_at_the_same_path(tmp_path: Path) -> None:
    media = make_media(tmp_path / "media")
    vae = write_tiny_model(tmp_path / "model") / "vae.safetensors"
    manifest = tmp_path / "items.txt"
    manifest.write_text(f"{sorted(media.iterdir())[0]}\n")
    cache = tmp_path / "latents"
    config = write_config(tmp_path / "run.yaml", tiny_config(
        media, tmp_path / "out", "fidelity", data={"cache": str(cache), "manifest": str(manifest)},
        latent={"kind": "vae", "vae": None, "vae_checkpoint": str(vae)}))
    cache_latents(config, count=2)
    open_cache(load_config(config), "bicubic_antialias")
    written = {p.name: p.read_bytes() for p in cache.iterdir()}

    original = vae.read_bytes()
    state = load_file(str(vae))
    with safe_open(str(vae), "pt") as handle:
        metadata = handle.metadata()
    first = sorted(state)[0]
    save_file({**state, first: state[first] + 0.01}, str(vae), metadata=metadata)  # retrained
    with pytest.raises(ConfigError, match="other latent"):
        open_cache(load_config(config), "bicubic_antialias")
    with pytest.raises(ConfigError, match="another config or count"):
        cache_latents(config, count=2)
    assert {p.name: p.read_bytes() for p in cache.iterdir()} == written

    vae.write_bytes(original)  # the same weights again: the cache is valid again
    open_cache(load_config(config), "bicubic_antialias")
    manifest.write_text(f"{sorted(media.iterdir())[-1]}\n")  # another item at the same path
    with pytest.raises(ConfigError, match="other data"):
        open_cache(load_config(config), "bicubic_antialias")


def test_a_cache_notices_media_added_to_or_removed_from_its_data_folder(tmp_path: Path) -> None:
    media = make_media(tmp_path / "media")
    cache = tmp_path / "latents"
    config = write_config(tmp_path / "run.yaml", tiny_config(
        media, tmp_path / "out", "fidelity", data={"cache": str(cache)}))
    cache_latents(config, count=2)
    written = {p.name: p.read_bytes() for p in cache.iterdir()}
    open_cache(load_config(config), "bicubic_antialias")

    added = media / "more" / "d.png"  # new footage under the same folder name
    added.parent.mkdir()
    added.write_bytes((media / "c.png").read_bytes())
    with pytest.raises(ConfigError, match="other data .* removed from or resized .* data.files_sha256 differ"):
        open_cache(load_config(config), "bicubic_antialias")
    with pytest.raises(ConfigError, match="another config or count"):
        cache_latents(config, count=2)  # nor is it written into
    added.unlink()
    open_cache(load_config(config), "bicubic_antialias")  # the same files again: valid

    (media / "b.mp4").unlink()
    with pytest.raises(ConfigError, match="other data"):
        open_cache(load_config(config), "bicubic_antialias")
    assert {p.name: p.read_bytes() for p in cache.iterdir()} == written
    moved = write_config(tmp_path / "moved.yaml", tiny_config(
        tmp_path / "gone", tmp_path / "out", "fidelity", data={"cache": str(cache)}))
    with pytest.raises(InputError, match="gone is not a folder .* leave data.roots"):
        open_cache(load_config(moved), "bicubic_antialias")
