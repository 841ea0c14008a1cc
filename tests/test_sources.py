"""Locating model files: folders, and downloads from a hub served on 127.0.0.1."""

from __future__ import annotations

import hashlib
import http.server
import threading
from pathlib import Path

import pytest

from seedvr2.errors import CheckpointError, InputError
from seedvr2.weights.sources import HubModel, download_hub_model, find_model_files, locate_model

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
    with pytest.raises(InputError, match="not a folder, a preset"):
        locate_model("no such thing")


class _Hub(http.server.BaseHTTPRequestHandler):
    """The two requests huggingface_hub makes per file: HEAD for metadata, GET for content."""

    files: dict[str, bytes] = {}
    etags: dict[str, str] = {}

    def _headers(self) -> bytes | None:
        name = self.path.split("/resolve/main/")[-1]
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
    _Hub.files = files
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
    with pytest.raises(CheckpointError, match="not in the local cache"):
        download_hub_model(MODEL, cache_dir=tmp_path, offline=True)


def test_corrupt_download_is_reported_not_deleted(hub: str, tmp_path: Path) -> None:
    _serve({"dit.safetensors": b"d" * 100, "vae.safetensors": b"v"}, corrupt="dit.safetensors")
    with pytest.raises(CheckpointError, match="corrupt"):
        download_hub_model(MODEL, cache_dir=tmp_path, endpoint=hub)
    assert any(p.name == hashlib.sha256(b"something else").hexdigest()
               for p in tmp_path.rglob("*"))
