"""``torchrun --nproc_per_node 2`` on the CPU (gloo): DDP equals one process, FSDP2 runs."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from process_support import finalization_marks
from seedvr2.train import run
from seedvr2.train.adversarial import AdversarialStage
from seedvr2.train.checkpoint import load_checkpoint
from seedvr2.train.config import config_from_dict
from seedvr2.train.distributed import DistContext
from train_support import make_media, tiny_config, write_config

ENTRY = Path(__file__).with_name("ddp_check.py")
CPU = DistContext(rank=0, world_size=1, device=torch.device("cpu"), parallel="none")


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
    """Same global batch (2 clips per rank vs 4 in one process) -> same weights after 3 steps.

    Adam with ``eps = 1`` (close to SGD here, as in the FSDP2 test below): with a tiny eps its
    first step is ``lr · sign(g)``, which float32 noise in the reduction flips on near-zero
    gradients, so the comparison failed at random under load.
    """
    single, ddp = _pair(media, tmp_path, "diffusion", "ddp", optim={"lr": 1e-3, "eps": 1.0},
                        data={"batch_size": 4}, run={"steps": 3})
    difference = _max_difference(single, ddp)
    assert max(difference.values()) < 1e-6, difference


def _shard_reports(folder: Path) -> list[dict]:
    return [json.loads((folder / f"rank{rank}.json").read_text()) for rank in range(2)]


def test_fsdp2_shards_generator_discriminator_and_ema(media: Path, tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """Every parameter of every network is a DTensor sharded on dim 0 (half of a block's rows
    per rank), and two sharded processes train like one to float32 rounding.

    Adam with ``eps = 1`` is close to SGD on these small gradients, so the update is linear in
    the gradient and float32 noise in the sharded reductions stays float32-sized in the weights
    (with a tiny eps, Adam's first step is ``lr · sign(g)`` and flips on near-zero gradients).
    """
    reports = tmp_path / "shards"
    reports.mkdir()
    monkeypatch.setenv("SEEDVR2_SHARD_REPORT", str(reports))
    optim = {"lr": 1e-3, "eps": 1.0}
    single, fsdp = _pair(media, tmp_path, "adversarial", "fsdp", optim=optim,
                         adversarial={"disc_optim": {"name": "adam", "betas": [0.0, 0.9], **optim}},
                         run={"steps": 2, "checkpoint_every": 2})
    per_rank = _shard_reports(reports)
    assert set(per_rank[0]) == {"generator", "generator_ema", "discriminator"}
    for network, params in per_rank[0].items():
        for key, p in params.items():
            other = per_rank[1][network][key]
            assert p["dtensor"] and p["shard_dims"] == [0], (network, key, p)
            assert p["local"][0] + other["local"][0] == p["global"][0], (network, key, p, other)
            assert p["local"][1:] == p["global"][1:], (network, key, p)

    start = AdversarialStage(config_from_dict(tiny_config(media, tmp_path / "x", "adversarial")),
                             CPU)
    initial = {name: {k: v.detach() for k, v in m.state_dict().items()}
               for name, m in start.networks.items()}
    first, second = load_checkpoint(single)["models"], load_checkpoint(fsdp)["models"]
    for name in first:
        moved = max(float((first[name][k] - initial[name][k]).abs().max()) for k in first[name])
        differ = max(float((first[name][k] - second[name][k]).abs().max()) for k in first[name])
        assert moved > 1e-5, name  # the weights did move (the EMA, decay 0.9, least)
        # a few float32 ulps of O(1) weights, and a thousandth of how far they moved
        assert differ < min(1e-6, 1e-3 * moved), (name, differ, moved)


def test_one_process_ddp_training_ends_without_finalization(media: Path, tmp_path: Path) -> None:
    """``seedvr2 train`` with ``run.parallel: ddp`` and no torchrun makes a one-process gloo
    group: it ends through ``exit_rank`` as torchrun ranks do (no atexit handler runs)."""
    cfg = tiny_config(media, tmp_path / "out", "diffusion", run={"steps": 1})
    cfg["run"]["parallel"] = "ddp"
    src = str(Path(__file__).parents[1] / "src")
    result = subprocess.run(
        [sys.executable, "-m", "seedvr2", "train", str(write_config(tmp_path / "c.yaml", cfg))],
        capture_output=True, text=True, timeout=300,
        env={**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": finalization_marks(tmp_path, src)},
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    assert list((tmp_path / "out" / "checkpoints").iterdir())
    assert not list(tmp_path.glob("finalized-*"))
