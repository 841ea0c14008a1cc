"""Every ```python block of README.md runs as written (bundled model, CPU)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[1] / "README.md"
SERVER_URL = "http://127.0.0.1:7860/"  # blocks talking to `seedvr2 serve` run in test_serve.py
EVERY_BLOCK = re.findall(r"^```python\n(.*?)^```", README.read_text(), flags=re.S | re.M)
BLOCKS = [code for code in EVERY_BLOCK if SERVER_URL not in code]


def test_readme_has_python_blocks():
    assert BLOCKS


@pytest.mark.parametrize("code", BLOCKS, ids=[f"block{i}" for i in range(len(BLOCKS))])
def test_readme_python_block_runs(code, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # the blocks write their files here
    exec(compile(code, str(README), "exec"), {"__name__": "readme"})
