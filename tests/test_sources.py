"""Locating model files: folders, and downloads from a hub served on 127.0.0.1."""

from __future__ import annotations

import hashlib
import http.server
import os
import re
import shutil
import socket
import subprocess
import sys
import threading
import time
from dataclasses import replace
from pathlib import Path

import pytest

import seedvr2.digests
from media_fixtures import pattern, write_image
from seedvr2.errors import CheckpointError, InputError
from seedvr2.weights import digests, sources
from seedvr2.weights.convert import convert_weights
from seedvr2.weights.sources import (
    HUB_PRESETS,
    HubModel,
    download_hub_model,
    find_model_files,
    locate_model,
)

COMMIT = "0123456789abcdef0123456789abcdef01234567"


def test_folder_with_official_names(tmp_path: Path) -> None:
    for name in ("seedvr2_ema_3b.pth", "ema_vae.pth", "pos_emb.pt", "neg_emb.pt", "README.md"):
        (tmp_path / name).write_bytes(b"x")
    files = locate_model(str(tmp_path))
    assert files.dit.name == "seedvr2_ema_3b.pth" and files.vae.name == "ema_vae.pth"
    assert files.pos_emb.name == "pos_emb.pt" and files.neg_emb.name == "neg_emb.pt"


def test_folder_with_our_names(tmp_path: Path) -> None:
    for name in ("dit.safetensors", "vae.safetensors", "pos_emb.safetensors"):
        (tmp_path / name).write_bytes(b"x")
    files = find_model_files(tmp_path)
    assert (files.dit.name, files.vae.name, files.neg_emb) == (
        "dit.safetensors", "vae.safetensors", None)


def test_ambiguous_and_missing_files_are_named(tmp_path: Path) -> None:
    for name in ("seedvr2_ema_7b.pth", "seedvr2_ema_7b_sharp.pth", "ema_vae.pth"):
        (tmp_path / name).write_bytes(b"x")
    with pytest.raises(CheckpointError, match="several dit files.*seedvr2_ema_7b_sharp.pth"):
        find_model_files(tmp_path)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(CheckpointError, match="no dit weights"):
        find_model_files(empty)


def test_unknown_spec() -> None:
    with pytest.raises(InputError, match="no such model folder or file: no such thing"):
        locate_model("no such thing")


class _Hub(http.server.BaseHTTPRequestHandler):
    """The two requests huggingface_hub makes per file: HEAD for metadata, GET for content."""

    files: dict[str, bytes] = {}
    etags: dict[str, str] = {}
    requests: list[str] = []

    def _headers(self) -> bytes | None:
        self.requests.append(self.path)
        name = self.path.split("/resolve/", 1)[-1].split("/", 1)[-1]  # after the revision
        body = self.files.get(name)
        if body is None:
            self.send_response(404)
            self.send_header("X-Error-Code", "EntryNotFound")
            self.end_headers()
            return None
        self.send_response(200)
        self.send_header("X-Repo-Commit", COMMIT)
        self.send_header("ETag", f'"{self.etags[name]}"')
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        return body

    def do_HEAD(self) -> None:  # noqa: N802
        self._headers()

    def do_GET(self) -> None:  # noqa: N802
        body = self._headers()
        if body is not None:
            self.wfile.write(body)

    def log_message(self, *args) -> None:
        pass


@pytest.fixture
def hub():
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Hub)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()


def _serve(files: dict[str, bytes], corrupt: str | None = None) -> None:
    _Hub.files, _Hub.requests = files, []
    _Hub.etags = {n: hashlib.sha256(b).hexdigest() for n, b in files.items()}
    if corrupt:
        _Hub.etags[corrupt] = hashlib.sha256(b"something else").hexdigest()


MODEL = HubModel("owner/model", dit="dit.safetensors", vae="vae.safetensors",
                 pos_emb="pos_emb.pt", neg_emb="neg_emb.pt")


def test_download_caches_and_works_offline_afterwards(hub: str, tmp_path: Path) -> None:
    _serve({"dit.safetensors": b"d" * 100, "vae.safetensors": b"v" * 50, "pos_emb.pt": b"p"})
    files = download_hub_model(MODEL, cache_dir=tmp_path, endpoint=hub)
    assert files.dit.read_bytes() == b"d" * 100 and files.neg_emb is None
    _serve({})  # the hub is gone: the cache answers
    again = download_hub_model(MODEL, cache_dir=tmp_path, offline=True, endpoint=hub)
    assert again.vae.read_bytes() == b"v" * 50


def test_offline_without_cache_says_so(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match=f"not in the download cache {tmp_path}, and offline=True"):
        download_hub_model(MODEL, cache_dir=tmp_path, offline=True)


def test_corrupt_download_is_reported_not_deleted(hub: str, tmp_path: Path) -> None:
    _serve({"dit.safetensors": b"d" * 100, "vae.safetensors": b"v"}, corrupt="dit.safetensors")
    with pytest.raises(CheckpointError, match="corrupt"):
        download_hub_model(MODEL, cache_dir=tmp_path, endpoint=hub)
    assert any(p.name == hashlib.sha256(b"something else").hexdigest()
               for p in tmp_path.rglob("*"))


# -- local paths versus repo ids ------------------------------------------------------------


@pytest.fixture
def no_downloads(monkeypatch):
    """Record what would be downloaded instead of downloading it."""
    asked: list[str] = []

    def record(model, cache_dir=None, offline=False, origin="", endpoint=None):
        asked.append(model.repo_id)

    monkeypatch.setattr(sources, "download_hub_model", record)
    return asked


@pytest.mark.parametrize(
    "spec",
    ["models/3b-typo", "./owner/model", "/no/such/folder", "~/no-such-folder/x",
     "owner/dit.safetensors", "owner/model.gguf", "3B"],
)  # fmt: skip
def test_paths_that_do_not_exist_are_not_repo_ids(
    tmp_path: Path, monkeypatch, no_downloads: list, spec: str
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "models").mkdir()  # an existing first component makes "models/..." a path
    with pytest.raises(InputError, match=f"no such model folder or file: {re.escape(spec)} "):
        locate_model(spec)
    assert no_downloads == []


def test_repo_ids_and_hf_urls_go_to_the_hub(tmp_path: Path, monkeypatch, no_downloads) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "models").mkdir()
    locate_model("owner/model")
    locate_model("hf://models/x")  # hf:// is the hub even where models/ is a folder
    assert no_downloads == ["owner/model", "models/x"]


def test_an_existing_folder_is_local_even_if_it_looks_like_a_repo_id(
    tmp_path: Path, monkeypatch, no_downloads
) -> None:
    monkeypatch.chdir(tmp_path)
    folder = tmp_path / "owner" / "model"
    folder.mkdir(parents=True)
    for name in ("dit.safetensors", "vae.safetensors"):
        (folder / name).write_bytes(b"x")
    assert locate_model("owner/model").dit == Path("owner/model/dit.safetensors")
    assert no_downloads == []


# -- pins, manifests and remembered digests ---------------------------------------------------


@pytest.fixture(autouse=True)
def stamps(tmp_path: Path, monkeypatch) -> Path:
    """Remembered digests go to a per-test folder."""
    monkeypatch.setenv("SEEDVR2_CACHE_DIR", str(tmp_path / "seedvr2-cache"))
    return tmp_path / "seedvr2-cache" / "digests"


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def test_presets_are_pinned_to_a_commit_and_digests() -> None:
    for preset in HUB_PRESETS.values():
        assert re.fullmatch(r"[0-9a-f]{40}", preset.revision)
        assert set(preset.files().values()) <= set(preset.sha256)  # pinned or explicitly None
        assert preset.sha256[preset.dit] and preset.sha256[preset.vae]


def test_pinned_revision_is_requested_and_files_checked_against_pins(
    hub: str, tmp_path: Path
) -> None:
    files = {"dit.safetensors": b"d" * 100, "vae.safetensors": b"v" * 50}
    _serve(files)
    pins = {name: _sha(body) for name, body in files.items()}
    pinned = replace(MODEL, revision=COMMIT, sha256=pins)
    got = download_hub_model(pinned, cache_dir=tmp_path / "a", endpoint=hub)
    assert got.dit.read_bytes() == files["dit.safetensors"]
    assert any(f"/resolve/{COMMIT}/dit.safetensors" in r for r in _Hub.requests)
    # The hub serves another, self-consistent file (its blob name matches): the pin refuses it.
    other = replace(pinned, sha256={**pins, "dit.safetensors": _sha(b"the released weights")})
    with pytest.raises(CheckpointError, match="dit.safetensors is corrupt .* the pinned release"):
        download_hub_model(other, cache_dir=tmp_path / "b", endpoint=hub)


def test_digests_are_remembered_until_the_file_changes(
    tmp_path: Path, monkeypatch, stamps: Path
) -> None:
    path = tmp_path / "w.bin"
    path.write_bytes(b"weights")
    assert digests.file_sha256(path) == _sha(b"weights")
    assert len(list(stamps.iterdir())) == 1
    monkeypatch.setattr(seedvr2.digests, "sha256_of", pytest.fail)  # a second hash would fail
    assert digests.file_sha256(path) == _sha(b"weights")
    path.write_bytes(b"tampered")  # new size and mtime: hashed again
    monkeypatch.setattr(seedvr2.digests, "sha256_of", lambda p: _sha(p.read_bytes()))
    with pytest.raises(CheckpointError, match=f"{path} is corrupt .* manifest says"):
        digests.check_sha256(path, _sha(b"weights"), "the manifest", "re-create it")


def _converted_model(tiny_model: Path, folder: Path) -> Path:
    """A model folder whose DiT was written by ``seedvr2 convert`` (with its .sha256)."""
    folder.mkdir()
    convert_weights(tiny_model / "dit.safetensors", folder / "dit.safetensors", "bf16")
    shutil.copy(tiny_model / "vae.safetensors", folder)
    return folder


def test_folders_are_checked_against_convert_manifests(tiny_model: Path, tmp_path: Path) -> None:
    folder = _converted_model(tiny_model, tmp_path / "model")
    assert locate_model(str(folder)).dit == folder / "dit.safetensors"
    dit = folder / "dit.safetensors"
    dit.write_bytes(dit.read_bytes()[:-1] + b"!")  # one byte changed
    with pytest.raises(CheckpointError, match=f"{dit} is corrupt .* its manifest {dit}.sha256"):
        locate_model(str(folder))


@pytest.mark.parametrize(
    ("manifest", "fault"),
    [("not a digest\n", "is not a sha256sum manifest"), (f"{'0' * 64}  other.safetensors\n",
                                                          "does not list dit.safetensors")],
)  # fmt: skip
def test_broken_manifests_are_named(
    tiny_model: Path, tmp_path: Path, manifest: str, fault: str
) -> None:
    folder = _converted_model(tiny_model, tmp_path / "model")
    (folder / "dit.safetensors.sha256").write_text(manifest)
    with pytest.raises(CheckpointError, match=fault):
        locate_model(str(folder))


# -- an unreachable hub -----------------------------------------------------------------------


def _closed_port() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}"


def test_cached_model_works_with_the_hub_unreachable(hub: str, tmp_path: Path) -> None:
    _serve({"dit.safetensors": b"d" * 100, "vae.safetensors": b"v" * 50})
    download_hub_model(MODEL, cache_dir=tmp_path, endpoint=hub)
    began = time.perf_counter()
    again = download_hub_model(MODEL, cache_dir=tmp_path, endpoint=_closed_port())
    assert again.dit.read_bytes() == b"d" * 100 and time.perf_counter() - began < 2


def test_unreachable_hub_fails_at_once(tmp_path: Path) -> None:
    began = time.perf_counter()
    with pytest.raises(CheckpointError, match="cannot be reached .*`seedvr2 download owner/mo"):
        download_hub_model(MODEL, cache_dir=tmp_path, endpoint=_closed_port(), origin="owner/mo")
    assert time.perf_counter() - began < 3


def _cli(*args: str, endpoint: str, home: Path) -> subprocess.CompletedProcess:
    """``seedvr2 ARGS`` in a fresh process whose hub is ``endpoint``."""
    env = {**os.environ, "HF_ENDPOINT": endpoint, "HF_HOME": str(home),
           "PYTHONPATH": os.pathsep.join(sys.path)}  # fmt: skip
    env.pop("HF_HUB_OFFLINE", None)
    command = [sys.executable, "-m", "seedvr2", *args]
    return subprocess.run(command, capture_output=True, text=True, env=env, timeout=60)


def test_cli_without_network_prints_one_line_within_5_s(tmp_path: Path) -> None:
    image = write_image(tmp_path / "in.png", pattern(1, 16, 16)[0], "rgb24")
    began = time.perf_counter()
    done = _cli("restore", str(image), "-o", str(tmp_path / "out.png"), "--model", "3b",
                endpoint=_closed_port(), home=tmp_path / "hf")  # fmt: skip
    elapsed = time.perf_counter() - began
    lines = done.stderr.splitlines()
    assert done.returncode == 1 and len(lines) == 1, done.stderr
    assert "not in the download cache" in lines[0] and str(tmp_path / "hf") in lines[0]
    assert "seedvr2 download 3b --cache-dir" in lines[0] and "--model FOLDER" in lines[0]
    assert elapsed < 5, f"{elapsed:.1f} s"


def test_download_command_fetches_verifies_and_prints_the_files(hub: str, tmp_path: Path) -> None:
    _serve({"dit.safetensors": b"d" * 100, "vae.safetensors": b"v" * 50, "pos_emb.safetensors": b"p"})
    done = _cli("download", "owner/model", "--cache-dir", str(tmp_path), endpoint=hub,
                home=tmp_path / "hf")  # fmt: skip
    assert done.returncode == 0, done.stderr
    printed = dict(line.split() for line in done.stdout.splitlines()[1:])
    assert Path(printed["dit"]).read_bytes() == b"d" * 100 and printed["neg_emb"] == "(none)"
    assert Path(printed["dit"]).is_relative_to(tmp_path)
    _serve({"dit.safetensors": b"d" * 100, "vae.safetensors": b"v"}, corrupt="vae.safetensors")
    done = _cli("download", "hf://owner/other", "--cache-dir", str(tmp_path), endpoint=hub,
                home=tmp_path / "hf")  # fmt: skip
    assert done.returncode == 1 and "vae.safetensors is corrupt" in done.stderr
