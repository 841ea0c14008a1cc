"""The model used when none is named: the small model bundled with the package."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from seedvr2.errors import InputError

BUNDLED_MODEL = "seedvr2-small"


def bundled_model_dir() -> Path:
    """Folder of the bundled model inside the installed package (it may be absent)."""
    return Path(str(resources.files("seedvr2"))) / "assets" / BUNDLED_MODEL


def default_model() -> Path:
    """The bundled model's folder, or a clear error when this install lacks it."""
    folder = bundled_model_dir()
    if not (folder / "dit.safetensors").is_file():
        raise InputError(
            f"no bundled model at {folder}; pass --model with a preset (3b, 7b, 7b-sharp), a "
            "folder of model files or a Hugging Face repo id"
        )
    return folder
