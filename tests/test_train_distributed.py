"""``torchrun --nproc_per_node 2`` on the CPU (gloo): DDP equals one process, FSDP2 runs."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from seedvr2.train import run
from seedvr2.train.checkpoint import load_checkpoint
from train_support import make_media, tiny_config, write_config

ENTRY = Path(__file__).with_name("ddp_check.py")


@pytest.fixture(scope="module")
def media(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_media(tmp_path_factory.mktemp("media"))


def _torchrun(config: Path) -> None:
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node",
               "2", str(ENTRY), str(config)]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    with subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                          env=env, start_new_session=True) as launcher:
        try:
            output, _ = launcher.communicate(timeout=240)
        except subprocess.TimeoutExpired:
            os.killpg(launcher.pid, signal.SIGKILL)  # torchrun and both workers
            output, _ = launcher.communicate()
    assert launcher.returncode == 0, output[-4000:]


def _max_difference(a: Path, b: Path) -> dict[str, float]:
    first, second = load_checkpoint(a)["models"], load_checkpoint(b)["models"]
    return {
        name: max(float((first[name][k] - second[name][k]).abs().max()) for k in first[name])
        for name in first
    }


def _pair(media: Path, tmp_path: Path, stage: str, parallel: str, **sections: dict) -> tuple:
    single = tiny_config(media, tmp_path / "single", stage, **sections)
    multi = tiny_config(media, tmp_path / parallel, stage, **sections)
    multi["run"]["parallel"] = parallel
    last = run(write_config(tmp_path / "single.yaml", single))
    _torchrun(write_config(tmp_path / f"{parallel}.yaml", multi))
    return last, tmp_path / parallel / "checkpoints" / last.name


def test_ddp_on_two_processes_equals_one_process(media: Path, tmp_path: Path) -> None:
    """Same global batch (2 clips per rank vs 4 in one process) -> same weights after 3 steps."""
    single, ddp = _pair(media, tmp_path, "diffusion", "ddp", optim={"lr": 3e-5},
                        data={"batch_size": 4}, run={"steps": 3})
    difference = _max_difference(single, ddp)
    assert max(difference.values()) < 1e-6, difference


def test_fsdp2_shards_generator_discriminator_and_ema(media: Path, tmp_path: Path) -> None:
    single, fsdp = _pair(media, tmp_path, "adversarial", "fsdp", optim={"lr": 1e-4},
                         run={"steps": 2, "checkpoint_every": 2})
    payload = load_checkpoint(fsdp)
    assert set(payload["models"]) == {"generator", "generator_ema", "discriminator"}
    assert all(torch.isfinite(v).all() for m in payload["models"].values() for v in m.values())
    assert max(_max_difference(single, fsdp).values()) < 1e-4
