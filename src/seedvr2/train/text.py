"""Text embeddings for training: one fixed embedding, or files, plus a null one for dropping/CFG.

SeedVR2 inference feeds one fixed embedding (``pos_emb.pt``) and training captions are not stated
(spec §1a "Text"); a run therefore uses ``text.path`` (or a seeded random embedding), per-item
files from the manifest when given, and drops to the null embedding with ``text.drop_prob``.

Dimension key: ``b`` clips, ``l`` text tokens, ``d`` text-encoder width.
"""

from __future__ import annotations

import torch

from seedvr2.errors import ConfigError
from seedvr2.weights import load_text_embedding

from . import rng
from .config import TextConfig


class TextBank:
    """The default and null embeddings, and per-clip selection with dropping."""

    def __init__(self, cfg: TextConfig, width: int, seed: int) -> None:
        if cfg.path is not None:
            self.default = load_text_embedding(cfg.path)
        else:
            g = rng.generator(seed, "init", 0)
            self.default = torch.randn(cfg.length, width, generator=g)
        self.null = (load_text_embedding(cfg.null_path) if cfg.null_path
                     else torch.zeros_like(self.default))
        for name, value in (("text.path", self.default), ("text.null_path", self.null)):
            if value.shape[1] != width:
                raise ConfigError(
                    f"{name}: embedding width {value.shape[1]} != DiT txt_in_dim {width}")
        self.drop_prob = cfg.drop_prob

    def select(
        self, items: list[torch.Tensor | None], generators: list[torch.Generator] | None
    ) -> list[torch.Tensor]:
        """Per clip: its own embedding or the default; with ``generators`` (training), replaced
        by the null one at ``drop_prob``."""
        out = []
        for i, item in enumerate(items):
            dropped = generators is not None and self.drop_prob > 0 and bool(
                torch.rand((), generator=generators[i]) < self.drop_prob)
            out.append(self.null if dropped else (self.default if item is None else item))
        return out


def pack_text(
    embeddings: list[torch.Tensor], device: torch.device
) -> tuple[torch.Tensor, torch.Tensor]:  # (sum l, d), (b, 1)
    """Concatenate per-clip embeddings into the DiT's packed text input."""
    txt = torch.cat(embeddings).to(device)
    shape = torch.tensor([[e.shape[0]] for e in embeddings], dtype=torch.long)
    return txt, shape
