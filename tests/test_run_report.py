"""The run report's timings, memory, versions and digests; the MPS fp16 NaN check."""

from __future__ import annotations

import hashlib
import json

import pytest
import torch

from media_fixtures import pattern, write_video
from seedvr2.cli import main
from seedvr2.errors import ConfigError
from seedvr2.pipeline.runtime import check_finite


def test_report_has_phases_memory_versions_and_digests(tiny_model, tmp_path):
    source = write_video(tmp_path / "in.mp4", pattern(5, 16, 24))
    out, report = tmp_path / "out.mp4", tmp_path / "run.json"
    args = ["restore", str(source), "-o", str(out), "--model", str(tiny_model), "--device", "cpu"]
    assert main([*args, "-q", "-b", "5", "--report", str(report)]) == 0
    data = json.loads(report.read_text())
    entry = data["files"][0]
    assert set(entry["timings"]) == {"encode", "dit", "decode", "write"}
    assert data["peak_memory"]["kind"] == "max_rss" and data["peak_memory"]["bytes"] > 0
    assert {"seedvr2", "torch", "python", "numpy", "av"} <= set(data["versions"])
    assert entry["sha256"]["input"] == hashlib.sha256(source.read_bytes()).hexdigest()
    assert entry["sha256"]["output"] == hashlib.sha256(out.read_bytes()).hexdigest()


def test_nan_decode_on_mps_fp16_asks_for_fp32():
    decoded = torch.tensor([0.5, float("nan")])
    with pytest.raises(ConfigError, match='dtype="fp32"'):
        check_finite(decoded, torch.device("mps"), torch.float16)
    check_finite(decoded, torch.device("mps"), torch.float32)  # only fp16 on MPS is checked
    check_finite(decoded, torch.device("cpu"), torch.float16)


def test_restore_clip_runs_the_check(tiny_model, monkeypatch):
    from seedvr2 import Restorer
    from seedvr2.pipeline import restorer as module

    def refuse(*_) -> None:
        raise ConfigError("checked")

    restorer = Restorer.from_pretrained(tiny_model, device="cpu", batch_size=1)
    monkeypatch.setattr(module, "check_finite", refuse)
    with pytest.raises(ConfigError, match="checked"):
        restorer.restore(pattern(1, 16, 16)[0] / 255.0)
