"""Where a model's files come from: a preset name, a local folder, or a Hugging Face repo.

A model is a DiT file, a VAE file and the text embeddings (``pos_emb`` / ``neg_emb``). Folders may
use the official file names (``seedvr2_ema_3b.pth``, ``ema_vae.pth``, ``pos_emb.pt``), the common
safetensors re-packs (``seedvr2_ema_7b_sharp_fp16.safetensors``) or ours (``dit.safetensors``,
``vae.safetensors``, ``pos_emb.safetensors``). A file with a ``NAME.sha256`` manifest beside it
(what ``seedvr2 convert`` writes) is checked against it.

``--model`` resolution: anything that exists locally is local; ``hf://owner/name`` is always the
hub; a bare ``owner/name`` is the hub only if it looks like a repo id, does not start with ``.``,
``/`` or ``~``, has no weights suffix and its first part is not a local folder (so a mistyped
path is reported, not downloaded from whoever owns that name).

Downloads go through ``huggingface_hub`` into its cache (``HF_HOME``), honour ``HF_HUB_OFFLINE``,
look in the cache first and probe the hub once with a short timeout before downloading anything,
so an offline machine gets one clear line at once instead of minutes of retries. Presets are
pinned to a commit of their repo and each file to its SHA-256; other hub files are checked against
the SHA-256 their cache blob is named after. Digests are remembered (:mod:`.digests`).
"""

from __future__ import annotations

import contextlib
import logging
import re
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from seedvr2.errors import CheckpointError, InputError

from .digests import check_sha256, manifest_digest

PROBE_TIMEOUT = 2.0  # seconds to wait for the hub before calling it unreachable


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
    revision: str | None = None  # a commit hash pins the files; None: the main branch
    sha256: Mapping[str, str | None] = field(default_factory=dict)  # file name -> pinned digest

    def files(self) -> dict[str, str]:
        """Role (``dit``, ``vae``, ``pos_emb``, ``neg_emb``) -> file name in the repo."""
        return {"dit": self.dit, "vae": self.vae, "pos_emb": self.pos_emb, "neg_emb": self.neg_emb}


# Pins: commit hashes and LFS SHA-256s of the released files. No official list publishes them;
# each value below is the one stated identically by several independent public sources found by
# content search of public GitHub code (2025-26): a SeedVR2-to-ComfyUI conversion script's
# "Provenance" block (repo @ revision, sha256 per file; several copies), an installer's pinned
# MODEL_CONFIG (revision, size, sha256; it notes ema_vae.pth has the same LFS oid in both repos),
# a model-mirroring tool's table of numz's registry LFS oids, and two deployment READMEs
# ("runtime fetch accepts only revision 37255ff... and verifies ...").
_REV_3B = "37255ff8cccfb01071b87f635a5948ca8d53117c"  # SeedVR2-3B main since 2025-06-22 "update ckpt"
_REV_7B = "eb0c4281d41ba3767d4f14370f0e37e9e9180c16"  # SeedVR2-7B
_VAE_SHA256 = "c7df8a67e68b7f9aca3d5d2153d2ce8ab4373687741a0f9ce87cb356ace51cac"  # both repos
_3B_SHA256 = {
    "seedvr2_ema_3b.pth": "6bcc5ac59447e97b100477480aebb01be2ec724c8340bb83faae21f64848604b",
    "ema_vae.pth": _VAE_SHA256,
    "pos_emb.pt": "fa07a14844314772266b66c3b95deb0027696d8fe7065721263db5176f45d799",
    "neg_emb.pt": "6a43e5800ef2354f1c156d27535834da055cbec8248298b8923492bba2076581",
}
_7B_SHA256 = {
    "seedvr2_ema_7b.pth": "e1b2ae25505607e61f2a7dc7967ba778aaf3e3626d9969ce6e24c52d9ddebfcd",
    "seedvr2_ema_7b_sharp.pth": "ced5706c976d5879efcab9e108349d67abcbd8a9b36a1f48bf0f19c24164a264",
    "ema_vae.pth": _VAE_SHA256,
    # Not found in any public source for the 7B repo (the sources use the 3B repo's embeddings):
    # unpinned, checked against their cache blob names only.
    "pos_emb.pt": None,
    "neg_emb.pt": None,
}
HUB_PRESETS: dict[str, HubModel] = {
    "3b": HubModel("ByteDance-Seed/SeedVR2-3B", dit="seedvr2_ema_3b.pth", revision=_REV_3B,
                   sha256=_3B_SHA256),
    "7b": HubModel("ByteDance-Seed/SeedVR2-7B", dit="seedvr2_ema_7b.pth", revision=_REV_7B,
                   sha256=_7B_SHA256),
    "7b-sharp": HubModel("ByteDance-Seed/SeedVR2-7B", dit="seedvr2_ema_7b_sharp.pth",
                         revision=_REV_7B, sha256=_7B_SHA256),
}  # fmt: skip

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


def _check_manifest(path: Path | None) -> None:
    """Check ``path`` against the ``NAME.sha256`` manifest beside it, if there is one."""
    manifest = None if path is None else path.with_name(path.name + ".sha256")
    if manifest is not None and manifest.is_file():
        check_sha256(path, manifest_digest(manifest, path.name), f"its manifest {manifest}",
                     "restore the file or re-create it (e.g. with seedvr2 convert)")  # fmt: skip


def find_model_files(folder: Path, origin: str | None = None) -> ModelFiles:
    """Model files in a folder (official, re-packed or our names), checked against manifests."""
    folder = Path(folder)
    if not folder.is_dir():
        raise InputError(f"model folder {folder} does not exist")
    files = ModelFiles(
        dit=_one(_weights(folder, _DIT_PATTERNS, exclude="vae"), "dit", folder),
        vae=_one(_weights(folder, _VAE_PATTERNS), "vae", folder),
        pos_emb=_embedding(folder, "pos_emb"),
        neg_emb=_embedding(folder, "neg_emb"),
        origin=origin or str(folder),
    )
    for path in (files.dit, files.vae, files.pos_emb, files.neg_emb):
        _check_manifest(path)
    return files


def _verify_hub_file(path: Path, pinned: str | None) -> None:
    """Check a cached hub file against its pinned SHA-256, else the one its blob is named after.

    Large (LFS) files are stored as ``blobs/<sha256>``; small unpinned files are named by a git
    hash and are not checked. A mismatch is reported, never deleted: the user decides.
    """
    blob = Path(path).resolve()
    remedy = f"delete {blob} and run again to download it anew"
    if pinned is not None:
        check_sha256(Path(path), pinned, "the pinned release", remedy)
    elif re.fullmatch(r"[0-9a-f]{64}", blob.name):
        check_sha256(Path(path), blob.name, "the hub (its blob name)", remedy)


def _hub_unreachable(endpoint: str) -> str | None:
    """Why ``endpoint`` cannot be reached within :data:`PROBE_TIMEOUT`, or None if it answers."""
    request = urllib.request.Request(endpoint.rstrip("/") + "/", method="HEAD")
    try:
        urllib.request.urlopen(request, timeout=PROBE_TIMEOUT).close()
    except urllib.error.HTTPError:
        return None  # it answered, even if with an error status
    except (urllib.error.URLError, OSError) as error:
        return str(getattr(error, "reason", error))
    return None


@contextlib.contextmanager
def _quiet_hub() -> Iterator[None]:
    """Silence huggingface_hub's per-retry warnings; failures are reported once, by us."""
    hub_log = logging.getLogger("huggingface_hub")
    level = hub_log.level
    hub_log.setLevel(logging.ERROR)
    try:
        yield
    finally:
        hub_log.setLevel(level)


def _not_cached_error(
    model: HubModel, missing: list[str], origin: str, cache: str, reason: str
) -> CheckpointError:
    revision = f"@{model.revision[:12]}" if model.revision else ""
    return CheckpointError(
        f"model {origin}: {', '.join(missing)} of {model.repo_id}{revision} not in the download "
        f"cache {cache}, and {reason}. To get it onto this machine: run `seedvr2 download "
        f"{origin} --cache-dir DIR` where there is a network, copy DIR here and pass --cache-dir "
        "DIR; or copy a folder with the model files here and pass --model FOLDER"
    )


def download_hub_model(
    model: HubModel,
    cache_dir: Path | None = None,
    offline: bool = False,
    origin: str = "",
    endpoint: str | None = None,
) -> ModelFiles:
    """Find a hub model's files in the cache, else download them (one quick probe first); verify.

    Raises:
        CheckpointError: a required file is neither cached nor downloadable (offline, hub
            unreachable, HTTP error), or a file's SHA-256 is not the pinned or blob one.
    """
    from huggingface_hub import constants, try_to_load_from_cache

    origin = origin or model.repo_id
    endpoint = endpoint or constants.ENDPOINT
    cache = str(cache_dir or constants.HF_HUB_CACHE)
    found: dict[str, Path | None] = {}
    for role, name in model.files().items():  # the cache first, without touching the network
        cached = try_to_load_from_cache(model.repo_id, name, cache_dir=cache_dir,
                                        revision=model.revision)  # fmt: skip
        if cached is not None:  # a path, or the hub's answer "no such file" remembered
            found[role] = Path(cached) if isinstance(cached, str) else None
    missing = {r: n for r, n in model.files().items() if r not in found}
    required = [n for r, n in missing.items() if r in ("dit", "vae")]
    if missing:
        reason = "--offline was given" if offline else (
            "HF_HUB_OFFLINE is set" if constants.HF_HUB_OFFLINE else None
        )
        if reason is None and (why := _hub_unreachable(endpoint)) is not None:
            reason = f"the hub {endpoint} cannot be reached ({why})"
        if reason is not None and required:
            raise _not_cached_error(model, required, origin, cache, reason)
        for role, name in missing.items():
            found[role] = None if reason else _download(model, name, cache_dir, endpoint,
                                                        role in ("dit", "vae"))  # fmt: skip
    for role, path in found.items():
        if path is not None:
            _verify_hub_file(path, model.sha256.get(model.files()[role]))
    return ModelFiles(found["dit"], found["vae"], found["pos_emb"], found["neg_emb"], origin)


def _download(
    model: HubModel, name: str, cache_dir: Path | None, endpoint: str, required: bool
) -> Path | None:
    """One file from the hub (None for an optional file the repo does not have)."""
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import EntryNotFoundError, LocalEntryNotFoundError

    try:
        with _quiet_hub():
            return Path(hf_hub_download(model.repo_id, name, revision=model.revision,
                                        cache_dir=cache_dir, endpoint=endpoint))  # fmt: skip
    except LocalEntryNotFoundError as err:  # (a subclass of the next) the connection failed
        raise CheckpointError(f"cannot download {model.repo_id}/{name}: {err}") from None
    except EntryNotFoundError:  # the hub answered: no such file
        if not required:
            return None
        raise CheckpointError(f"{model.repo_id} has no file {name}") from None
    except Exception as err:  # hub errors: 404 repo, auth, HTTP, connection lost mid-way
        raise CheckpointError(f"cannot download {model.repo_id}/{name}: {err}") from err


def _repo_id(spec: str) -> str | None:
    """``spec`` as a hub repo id under the rules of the module doc, or None."""
    if spec.startswith("hf://"):
        repo = spec.removeprefix("hf://")
        if not _REPO_ID.fullmatch(repo):
            raise InputError(f"{spec!r} is not hf://owner/name")
        return repo
    first = Path(spec.split("/")[0]).expanduser()
    if (
        not _REPO_ID.fullmatch(spec)
        or spec.startswith((".", "/", "~"))
        or spec.endswith(_WEIGHT_SUFFIXES)
        or first.is_dir()
    ):
        return None
    return spec


def hub_model(spec: str) -> HubModel | None:
    """The hub model ``spec`` names (a preset or a repo id of our file names), or None."""
    if spec in HUB_PRESETS:
        return HUB_PRESETS[spec]
    repo = _repo_id(spec)
    if repo is None:
        return None
    return HubModel(repo, dit="dit.safetensors", vae="vae.safetensors",
                    pos_emb="pos_emb.safetensors", neg_emb="neg_emb.safetensors")  # fmt: skip


def locate_model(
    spec: str,
    cache_dir: Path | None = None,
    offline: bool = False,
    endpoint: str | None = None,
) -> ModelFiles:
    """Resolve ``--model``: a local folder, a preset (``3b``, ``7b``, ``7b-sharp``) or a repo id.

    A repo id ``owner/name`` (or ``hf://owner/name``) is expected to hold our file names
    (``dit.safetensors`` ...). See the module doc for how local paths and repo ids are told apart.
    """
    path = Path(spec).expanduser()
    if path.is_dir():
        return find_model_files(path, origin=spec)
    if path.exists():
        raise InputError(f"--model {spec} is a file; a model is a folder holding the DiT and VAE")
    model = hub_model(spec)
    if model is None:
        raise InputError(
            f"no such model folder or file: {spec} (a model is a folder, a preset "
            f"({', '.join(HUB_PRESETS)}) or a Hugging Face repo as owner/name or hf://owner/name)"
        )
    return download_hub_model(model, cache_dir, offline, spec, endpoint)


def download_model(
    spec: str, cache_dir: Path | None = None, endpoint: str | None = None
) -> ModelFiles:
    """``seedvr2 download``: fetch a preset or repo into the cache and verify it."""
    model = hub_model(spec)
    if model is None:
        raise InputError(
            f"{spec!r} is not a preset ({', '.join(HUB_PRESETS)}) or a Hugging Face repo id "
            "(owner/name or hf://owner/name)"
        )
    return download_hub_model(model, cache_dir, False, spec, endpoint)

