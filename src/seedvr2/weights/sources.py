"""Where a model's files come from: a preset name, a local folder, or a Hugging Face repo.

A model is a DiT file, a VAE file and the text embeddings (``pos_emb`` / ``neg_emb``). Folders may
use the official file names (``seedvr2_ema_3b.pth``, ``ema_vae.pth``, ``pos_emb.pt``), the common
safetensors re-packs (``seedvr2_ema_7b_sharp_fp16.safetensors``) or ours (``dit.safetensors``,
``vae.safetensors``, ``pos_emb.safetensors``).

Downloads go through ``huggingface_hub`` into its cache (``HF_HOME``), honour ``HF_HUB_OFFLINE``,
and are verified: the hub stores large files under their SHA-256, which we recompute.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from pathlib import Path

from seedvr2.errors import CheckpointError, InputError


@dataclass(frozen=True)
class ModelFiles:
    """Paths of one model's files."""

    dit: Path
    vae: Path
    pos_emb: Path | None
    neg_emb: Path | None
    origin: str  # what the user asked for, for messages and reports


@dataclass(frozen=True)
class HubModel:
    repo_id: str
    dit: str
    vae: str = "ema_vae.pth"
    pos_emb: str = "pos_emb.pt"
    neg_emb: str = "neg_emb.pt"


HUB_PRESETS: dict[str, HubModel] = {
    "3b": HubModel("ByteDance-Seed/SeedVR2-3B", dit="seedvr2_ema_3b.pth"),
    "7b": HubModel("ByteDance-Seed/SeedVR2-7B", dit="seedvr2_ema_7b.pth"),
    "7b-sharp": HubModel("ByteDance-Seed/SeedVR2-7B", dit="seedvr2_ema_7b_sharp.pth"),
}

_WEIGHT_SUFFIXES = (".safetensors", ".pth", ".pt", ".bin", ".gguf")
_DIT_PATTERNS = ("dit.*", "seedvr2_ema_*", "*dit*")
_VAE_PATTERNS = ("vae.*", "ema_vae*", "*vae*")
_REPO_ID = re.compile(r"[A-Za-z0-9][\w.-]*/[\w.-]+")


def _weights(folder: Path, patterns: tuple[str, ...], exclude: str | None = None) -> list[Path]:
    for pattern in patterns:
        found = sorted(
            p for p in folder.glob(pattern)
            if p.suffix in _WEIGHT_SUFFIXES and (exclude is None or exclude not in p.name)
        )
        if found:
            return found
    return []


def _one(found: list[Path], what: str, folder: Path) -> Path:
    if not found:
        raise CheckpointError(f"no {what} weights in {folder} (expected e.g. {what}.safetensors)")
    if len(found) > 1:
        names = ", ".join(p.name for p in found)
        raise CheckpointError(
            f"several {what} files in {folder}: {names}; keep one or pass the file itself"
        )
    return found[0]


def _embedding(folder: Path, stem: str) -> Path | None:
    for suffix in (".safetensors", ".pt", ".pth"):
        if (folder / f"{stem}{suffix}").is_file():
            return folder / f"{stem}{suffix}"
    return None


def find_model_files(folder: Path, origin: str | None = None) -> ModelFiles:
    """Model files in a folder (official, re-packed or our names)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise InputError(f"model folder {folder} does not exist")
    return ModelFiles(
        dit=_one(_weights(folder, _DIT_PATTERNS, exclude="vae"), "dit", folder),
        vae=_one(_weights(folder, _VAE_PATTERNS), "vae", folder),
        pos_emb=_embedding(folder, "pos_emb"),
        neg_emb=_embedding(folder, "neg_emb"),
        origin=origin or str(folder),
    )


def sha256_of(path: Path, chunk: int = 1 << 24) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def verify_hub_file(path: Path) -> None:
    """Check a file of the hub cache against the SHA-256 its blob is named after.

    Large (LFS) files are stored as ``blobs/<sha256>``; small files are named by a git hash and
    are not checked. A mismatch is reported, never deleted: the user decides.
    """
    blob = Path(path).resolve()
    if re.fullmatch(r"[0-9a-f]{64}", blob.name) and sha256_of(blob) != blob.name:
        raise CheckpointError(
            f"{path} is corrupt: its SHA-256 differs from the hub's {blob.name}; delete {blob} "
            "and run again to download it anew"
        )


def download_hub_model(
    model: HubModel,
    cache_dir: Path | None = None,
    offline: bool = False,
    origin: str = "",
    endpoint: str | None = None,
) -> ModelFiles:
    """Fetch (or find in the cache) the files of a hub model and verify them."""
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import LocalEntryNotFoundError

    def fetch(filename: str, required: bool = True) -> Path | None:
        try:
            path = Path(hf_hub_download(
                model.repo_id, filename, cache_dir=cache_dir, local_files_only=offline,
                endpoint=endpoint,
            ))
        except LocalEntryNotFoundError as err:
            if not required:
                return None
            raise CheckpointError(
                f"{model.repo_id}/{filename} is not in the local cache and the hub cannot be "
                "reached (offline?); download it on a connected machine or pass --model with a "
                "local folder"
            ) from err
        except Exception as err:  # hub errors: 404, auth, HTTP
            if not required:
                return None
            raise CheckpointError(f"cannot download {model.repo_id}/{filename}: {err}") from err
        verify_hub_file(path)
        return path

    return ModelFiles(
        dit=fetch(model.dit),
        vae=fetch(model.vae),
        pos_emb=fetch(model.pos_emb, required=False),
        neg_emb=fetch(model.neg_emb, required=False),
        origin=origin or model.repo_id,
    )


def locate_model(
    spec: str,
    cache_dir: Path | None = None,
    offline: bool = False,
    endpoint: str | None = None,
) -> ModelFiles:
    """Resolve ``--model``: a local folder, a preset (``3b``, ``7b``, ``7b-sharp``) or a repo id.

    A repo id ``owner/name`` is expected to hold our file names (``dit.safetensors`` ...).
    """
    path = Path(spec).expanduser()
    if path.is_dir():
        return find_model_files(path, origin=spec)
    if spec in HUB_PRESETS:
        return download_hub_model(HUB_PRESETS[spec], cache_dir, offline, spec, endpoint)
    if _REPO_ID.fullmatch(spec) and not path.exists():
        ours = HubModel(spec, dit="dit.safetensors", vae="vae.safetensors",
                        pos_emb="pos_emb.safetensors", neg_emb="neg_emb.safetensors")
        return download_hub_model(ours, cache_dir, offline, spec, endpoint)
    raise InputError(
        f"--model {spec!r} is not a folder, a preset ({', '.join(HUB_PRESETS)}) or a Hugging Face "
        "repo id (owner/name)"
    )
