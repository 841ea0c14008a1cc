"""Shared pytest configuration and fixtures."""

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from model_fixtures import write_tiny_model

torch.set_num_threads(max(1, min(torch.get_num_threads(), 4)))


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Folder of a tiny random model (3b-tiny DiT, tiny VAE) in our file format."""
    return write_tiny_model(tmp_path_factory.mktemp("model") / "tiny")


@pytest.fixture(scope="session", autouse=True)
def private_digest_cache(tmp_path_factory: pytest.TempPathFactory):
    """Keep the file digests remembered by test runs out of the user's cache folder."""
    patch = pytest.MonkeyPatch()
    patch.setenv("SEEDVR2_CACHE_DIR", str(tmp_path_factory.mktemp("seedvr2-cache")))
    yield
    patch.undo()


@pytest.fixture
def umask_002() -> Iterator[int]:
    """Files are created under umask 0o002 (not the usual 0o022); yields the mode of a new file."""
    old = os.umask(0o002)
    yield 0o664
    os.umask(old)
