"""Weights: locating model files, reading checkpoint formats, strict loading into models."""

from .formats import load_state_dict_file
from .loading import CheckpointSummary, load_into, state_dict_summary
from .sources import HUB_PRESETS, ModelFiles, locate_model
from .text_embeddings import load_text_embedding

__all__ = [
    "HUB_PRESETS",
    "CheckpointSummary",
    "ModelFiles",
    "load_into",
    "load_state_dict_file",
    "load_text_embedding",
    "locate_model",
    "state_dict_summary",
]
