"""A weights file's stored config is checked against its tensor names and shapes first.

The check reads only the header (no tensor data) and runs before the network is built, so a tiny
file whose config claims 20,000 layers is refused at once instead of building for a minute.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from seedvr2.errors import CheckpointError
from seedvr2.models.dit import SeedVR2DiT
from seedvr2.models.vae import VideoAutoencoder
from seedvr2.weights import networks
from seedvr2.weights.gguf_files import CONFIG_KEY, save_gguf
from seedvr2.weights.networks import load_dit, load_vae


def _rewrite(tiny_model: Path, name: str, tmp_path: Path, suffix: str = ".safetensors",
             tensors=None, **config_changes) -> Path:
    """The tiny model's ``name`` file with config changes (and tensors), as safetensors or GGUF."""
    source = tiny_model / f"{name}.safetensors"
    with safe_open(str(source), framework="pt") as f:
        config = {**json.loads(f.metadata()["config"]), **config_changes}
    state = load_file(source)
    state = tensors(state) if tensors else state
    path = tmp_path / f"{name}{suffix}"
    if suffix == ".gguf":
        return save_gguf(state, path, "F32", {CONFIG_KEY: json.dumps(config)})
    save_file(state, str(path), metadata={"config": json.dumps(config)})
    return path


@pytest.fixture
def no_data_reads(monkeypatch):
    """Fail the test if tensor data is loaded or a network is built."""

    def refuse(*args, **kwargs):
        raise AssertionError("the file's data was read or the network built before the check")

    monkeypatch.setattr(networks, "load_state_dict_file", refuse)
    monkeypatch.setattr(SeedVR2DiT, "__init__", refuse)
    monkeypatch.setattr(VideoAutoencoder, "__init__", refuse)


@pytest.mark.parametrize("suffix", [".safetensors", ".gguf"])
def test_config_claiming_20000_layers_is_refused_from_the_header(
    tiny_model: Path, tmp_path: Path, suffix: str, no_data_reads
) -> None:
    if suffix == ".gguf":
        pytest.importorskip("gguf")
    path = _rewrite(tiny_model, "dit", tmp_path, suffix, num_layers=20_000, window_methods=[])
    began = time.perf_counter()
    with pytest.raises(CheckpointError, match="num_layers 20000 in the config, 4 blocks in the"):
        load_dit(path, torch.float32)
    assert time.perf_counter() - began < 1.0


@pytest.mark.parametrize(
    ("changes", "fault"),
    [
        ({"dim": 256, "heads": 4}, "dim 256 in the config, 128 width"),
        ({"mm_layers": 4}, "mm_layers 4 in the config, 2 two-stream blocks"),
        ({"mlp_type": "gelu"}, "mlp_type gelu in the config, swiglu MLP"),
    ],
)
def test_dit_config_fields_are_checked(
    tiny_model: Path, tmp_path: Path, changes: dict, fault: str, no_data_reads
) -> None:
    with pytest.raises(CheckpointError, match=fault):
        load_dit(_rewrite(tiny_model, "dit", tmp_path, **changes), torch.float32)


@pytest.mark.parametrize(
    ("changes", "fault"),
    [
        ({"layers_per_block": 5000}, "layers_per_block 5000 in the config, 2 resnets per block"),
        ({"block_channels": [16] * 400}, "len\\(block_channels\\) 400 in the config, 4 down"),
        ({"block_channels": [32, 16, 32, 32]}, "block_channels\\[0\\] 32 in the config, 16 base"),
    ],
)
def test_vae_config_fields_are_checked(
    tiny_model: Path, tmp_path: Path, changes: dict, fault: str, no_data_reads
) -> None:
    with pytest.raises(CheckpointError, match=fault):
        load_vae(_rewrite(tiny_model, "vae", tmp_path, **changes), torch.float32)


def test_tensor_shapes_are_checked_before_the_data_is_read(
    tiny_model: Path, tmp_path: Path, monkeypatch
) -> None:
    def wider_text_input(state: dict) -> dict:
        return {**state, "txt_in.weight": torch.zeros(128, 65)}  # config says txt_in_dim 64

    path = _rewrite(tiny_model, "dit", tmp_path, tensors=wider_text_input)
    monkeypatch.setattr(networks, "load_state_dict_file", pytest.fail)
    with pytest.raises(CheckpointError, match=r"txt_in.weight expected \(128, 64\) got \(128, 65\)"):
        load_dit(path, torch.float32)


def test_invalid_stored_config_names_the_file(tiny_model: Path, tmp_path: Path) -> None:
    path = _rewrite(tiny_model, "dit", tmp_path, num_layers="many")
    with pytest.raises(CheckpointError, match=f"{path}: its stored DIT config is invalid"):
        load_dit(path, torch.float32)


def test_consistent_files_still_load(tiny_model: Path) -> None:
    dit = load_dit(tiny_model / "dit.safetensors", torch.float32)
    vae = load_vae(tiny_model / "vae.safetensors", torch.float32)
    assert len(dit.blocks) == 4 and not any(p.is_meta for p in (*dit.parameters(), *vae.parameters()))
