"""Dry-run memory estimates and the advice given when a job will not fit."""

from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from media_fixtures import pattern, write_video
from seedvr2.cli import main
from seedvr2.pipeline import memory
from seedvr2.pipeline.options import RestoreOptions, VAETiling
from seedvr2.pipeline.sizing import plan_size

# Roughly SeedVR2-3B: 3.4 G DiT parameters of width 2560 in 32 blocks; the released VAE.
FACTS_3B = memory.ModelFacts(3_400_000_000, 2560, 250_000_000, 128, dit_depth=32)
GIB = 2**30


def _plan(options: RestoreOptions, frames: int = 61) -> memory.Workload:
    return memory.Workload(plan_size((540, 960), resolution=1080), frames)


def _peak(options: RestoreOptions, setup: memory.MemorySetup) -> int:
    return memory.estimate_peak_bytes(_plan(options), options, FACTS_3B, setup)


def test_each_memory_setting_lowers_the_estimate():
    options, setup = RestoreOptions(batch_size=21), memory.MemorySetup(torch.bfloat16)
    base = _peak(options, setup)
    assert _peak(options, replace(setup, offload=True)) < base
    assert _peak(options, replace(setup, swap_blocks=16)) < base
    tiled = replace(options, tiling=VAETiling(encode_tile=512, decode_tile=512))
    assert _peak(tiled, setup) < base
    assert _peak(replace(tiled, batch_size=9), setup) < _peak(tiled, setup)  # DiT-bound now
    assert _peak(options, replace(setup, dtype=torch.float32)) > base


def test_advice_names_settings_that_make_the_job_fit():
    options, setup = RestoreOptions(batch_size=21), memory.MemorySetup(torch.bfloat16)
    base = _peak(options, setup)
    available = int(base * 0.8)
    changes = memory.fitting_changes(_plan(options), options, FACTS_3B, setup, available)
    assert changes[0] == "--offload"  # the mildest change that fits comes first
    assert _peak(options, replace(setup, offload=True)) <= available
    assert all(flag.startswith("--") for flag in changes)


def test_advice_stacks_changes_when_one_is_not_enough_and_gives_up_honestly():
    options, setup = RestoreOptions(batch_size=21), memory.MemorySetup(torch.float32)
    tight = memory.fitting_changes(_plan(options), options, FACTS_3B, setup, 8 * GIB)
    assert len(tight) == 1 and len(tight[0].split(" --")) > 1  # several flags together
    assert memory.fitting_changes(_plan(options), options, FACTS_3B, setup, 2**20) == []


def test_dry_run_warns_and_advises_when_the_device_is_too_small(tiny_model, tmp_path: Path,
                                                                 capsys, monkeypatch):  # fmt: skip
    monkeypatch.setattr("seedvr2.pipeline.runtime.available_memory_bytes", lambda device: 2**20)
    source = write_video(tmp_path / "clip.mp4", pattern(9, 64, 96))
    code = main(["restore", str(source), "-o", str(tmp_path / "out.mp4"), "--model",
                 str(tiny_model), "--device", "cpu", "--scale", "4", "--dry-run"])  # fmt: skip
    printed = capsys.readouterr().out
    assert code == 0 and "of 1 MiB available" in printed
    assert "will not fit; try" in printed


@pytest.mark.skipif(not Path("/proc/meminfo").exists(), reason="reads /proc/meminfo (Linux)")
def test_available_memory_is_read_on_linux():
    from seedvr2.pipeline.runtime import available_memory_bytes

    available = available_memory_bytes(torch.device("cpu"))
    assert available is not None and 2**20 < available <= os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
