"""A tiny randomly initialised model folder in our format, for pipeline and CLI tests."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import torch
from safetensors.torch import save_file

from seedvr2.models import build_dit, build_vae
from seedvr2.models.dit import resolve_dit_config
from seedvr2.models.vae import resolve_vae_config


def write_tiny_model(
    folder: Path, seed: int = 0, negative: bool = True, color_correction: str = "wavelet"
) -> Path:
    """dit/vae safetensors (config in the metadata) and prompt embeddings, random weights."""
    folder.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(seed)
    dit_config = dataclasses.replace(resolve_dit_config("3b-tiny"), color_correction=color_correction)
    vae_config = resolve_vae_config("tiny")
    for name, model, config in (
        ("dit", build_dit(dit_config), dit_config),
        ("vae", build_vae(vae_config), vae_config),
    ):
        state = {k: v.contiguous() for k, v in model.state_dict().items()}
        metadata = {"config": json.dumps(config.to_dict())}
        save_file(state, str(folder / f"{name}.safetensors"), metadata=metadata)
    save_file({"emb": torch.randn(7, dit_config.txt_in_dim)}, str(folder / "pos_emb.safetensors"))
    if negative:
        save_file({"emb": torch.randn(5, dit_config.txt_in_dim)}, str(folder / "neg_emb.safetensors"))
    return folder
