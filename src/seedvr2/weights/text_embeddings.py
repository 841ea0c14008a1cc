"""The shipped text embeddings ``pos_emb.pt`` / ``neg_emb.pt`` (spec §2: bf16, (58|64, 5120)).

SeedVR2 ships no text encoder: the prompts are fixed embeddings. They are read as one tensor from
a pickle (``torch.load(weights_only=True)``) or from a safetensors file holding a single tensor.
"""

from __future__ import annotations

from pathlib import Path

import torch

from seedvr2.errors import CheckpointError

from .formats import Device, checked_path, load_pickle, load_state_dict_file


def load_text_embedding(
    path: str | Path,
    dtype: torch.dtype = torch.float32,
    device: Device = "cpu",
) -> torch.Tensor:  # (l, c) text tokens
    """One prompt's embedding as an ``(l, c)`` tensor of ``dtype`` on ``device``.

    Raises:
        CheckpointError: missing or unreadable file, not exactly one tensor, not 2-D floating point.
    """
    path = checked_path(path)
    if path.suffix == ".safetensors":
        tensors = list(load_state_dict_file(path).values())
    else:
        obj = load_pickle(path)
        tensors = [obj] if isinstance(obj, torch.Tensor) else []
    if len(tensors) != 1:
        raise CheckpointError(f"{path} must hold exactly one tensor (a text embedding)")
    embedding = tensors[0]
    if embedding.ndim != 2 or not embedding.is_floating_point() or 0 in embedding.shape:
        raise CheckpointError(
            f"{path}: a text embedding is a non-empty 2-D float tensor (tokens, 5120), got "
            f"{embedding.dtype} of shape {tuple(embedding.shape)}"
        )
    return embedding.to(device=device, dtype=dtype)
