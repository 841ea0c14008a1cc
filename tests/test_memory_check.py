"""Jobs that cannot fit are refused before work starts; every out-of-memory becomes OutOfMemory."""

from __future__ import annotations

import re
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from media_fixtures import write_image
from seedvr2 import Restorer
from seedvr2.cli import main
from seedvr2.errors import OutOfMemory
from seedvr2.models.dit import SeedVR2DiT
from seedvr2.pipeline import Job, memory, restore_file
from seedvr2.pipeline import restorer as restorer_module
from seedvr2.pipeline.options import RestoreOptions
from seedvr2.pipeline.sizing import plan_size

GIB = 2**30


class Loaded(Exception):
    """Raised where a model would load: the test saw the job get past every check."""


@pytest.fixture
def no_loading(monkeypatch):
    def refuse(*args, **kwargs):
        raise Loaded

    monkeypatch.setattr(Restorer, "from_pretrained", refuse)


@pytest.fixture
def eight_gib(monkeypatch):
    """Every device has 8 GiB free, whatever this machine has."""
    monkeypatch.setattr("seedvr2.pipeline.runtime.available_memory_bytes", lambda device: 8 * GIB)


@pytest.fixture(scope="module")
def big_image(tmp_path_factory) -> Path:
    """1500x1500 black PNG: cheap to read, 6000x6000 at --scale 4 (far beyond 8 GiB)."""
    path = tmp_path_factory.mktemp("big") / "big.png"
    return write_image(path, np.zeros((1500, 1500, 3), np.uint8), "rgb24")


@pytest.fixture(scope="module")
def restorer(tiny_model) -> Restorer:
    return Restorer.from_pretrained(tiny_model, device="cpu", batch_size=5, overlap=2)


def _cli(model: Path, *args: object) -> int:
    return main(["restore", *map(str, args), "--model", str(model), "--device", "cpu", "-q"])


def test_impossible_image_is_refused_before_the_model_loads(tiny_model, big_image, tmp_path,
                                                            capsys, eight_gib, no_loading):  # fmt: skip
    out = tmp_path / "out.png"
    began = time.perf_counter()
    assert _cli(tiny_model, big_image, "-o", out, "--scale", "4") == 1
    assert time.perf_counter() - began < 2
    error = capsys.readouterr().err.strip()
    assert len(error.splitlines()) == 1 and error.startswith("seedvr2: error:")
    assert "6000x6000 output needs about" in error and "8.0 GiB is available" in error
    assert "try --encode-tile 512 --decode-tile 512 or --scale " in error  # the dry run's advice
    assert "--no-memory-check" in error
    largest = re.search(r"--scale ([\d.]+) \(the largest size that fits as is\)", error)
    assert largest is not None and 0 < float(largest[1]) < 4
    assert not out.exists()


def test_the_advised_largest_size_fits_and_a_little_more_does_not(tiny_model):
    facts = memory.model_facts(tiny_model)
    setup = memory.MemorySetup(torch.float32, device_type="cpu")
    options = RestoreOptions(resolution=4000)
    work = memory.Workload(plan_size((1500, 1500), 4000), 1)
    flag = memory.largest_fitting_size(work, options, facts, setup, 8 * GIB)
    side = int(flag.removeprefix("--resolution "))

    def peak(side: int) -> int:
        return memory.estimate_peak_bytes(
            memory.Workload(plan_size((1500, 1500), side), 1), options, facts, setup
        )

    assert peak(side) <= 8 * GIB < peak(side + 16)  # the next network size does not fit


def test_no_memory_check_lets_an_impossible_job_start(tiny_model, big_image, tmp_path, eight_gib,
                                                      no_loading):  # fmt: skip
    with pytest.raises(Loaded):
        _cli(tiny_model, big_image, "-o", tmp_path / "out.png", "--scale", "4", "--no-memory-check")


def test_folder_run_fails_the_impossible_file_and_restores_the_others(tiny_model, big_image,
                                                                      tmp_path, capsys, eight_gib):  # fmt: skip
    folder = tmp_path / "in"
    folder.mkdir()
    (folder / "big.png").write_bytes(big_image.read_bytes())
    write_image(folder / "small.png", np.full((24, 32, 3), 99, np.uint8), "rgb24")
    assert _cli(tiny_model, folder, "-o", tmp_path / "out", "--scale", "4") == 1
    assert (tmp_path / "out" / "small.png").exists() and not (tmp_path / "out" / "big.png").exists()
    captured = capsys.readouterr()
    assert "big.png: a 6000x6000 output needs about" in captured.err
    assert "restored 1 file(s)" in captured.out and "1 failed" in captured.out


def test_api_refuses_before_restoring(restorer, tmp_path, monkeypatch):
    def never(*args):
        raise AssertionError("restoration started")

    monkeypatch.setattr(restorer, "_restore_frames", never)
    frames = np.zeros((5, 64, 64, 3), np.float32)
    facts = memory.ModelFacts.of_networks(restorer.model.dit, restorer.model.vae)
    work = memory.Workload(restorer.plan_size((64, 64)), 5)
    peak = memory.estimate_peak_bytes(work, restorer.options, facts, restorer.memory_setup)
    monkeypatch.setattr("seedvr2.pipeline.runtime.available_memory_bytes", lambda d: peak - 1)
    with pytest.raises(OutOfMemory, match="64x64 output needs about .*memory_check=False"):
        restorer.restore(frames)
    source = write_image(tmp_path / "in.png", np.zeros((64, 64, 3), np.uint8), "rgb24")
    with pytest.raises(OutOfMemory, match=f"^{source}: a 64x64 output"):
        restore_file(restorer, Job(source, tmp_path / "out.png"))
    assert not list(tmp_path.glob("*out*"))
    monkeypatch.setattr("seedvr2.pipeline.runtime.available_memory_bytes", lambda d: peak)
    with pytest.raises(AssertionError, match="restoration started"):  # exactly enough: it runs
        restorer.restore(frames)


def test_replicas_on_one_device_need_its_memory_once_each(monkeypatch):
    facts = memory.ModelFacts(4_000_000, 192, 500_000, 16, dit_depth=6)
    options, setup = RestoreOptions(), memory.MemorySetup(device_type="cpu")
    work = memory.Workload(plan_size((64, 64)), 9)
    peak = memory.estimate_peak_bytes(work, options, facts, setup)
    monkeypatch.setattr("seedvr2.pipeline.runtime.available_memory_bytes", lambda d: peak * 3 // 2)
    cpu = torch.device("cpu")
    memory.check_fits("clip", work, options, facts, setup, [cpu])
    with pytest.raises(OutOfMemory, match="^clip: "):
        memory.check_fits("clip", work, options, facts, setup, [cpu, cpu])


def test_available_memory_of_each_device_type(monkeypatch):
    from seedvr2.pipeline.runtime import available_memory_bytes

    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda device: (3 * GIB, 80 * GIB))
    assert available_memory_bytes(torch.device("cuda")) == 3 * GIB
    monkeypatch.setattr(torch.mps, "recommended_max_memory", lambda: 20 * GIB)
    monkeypatch.setattr(torch.mps, "driver_allocated_memory", lambda: 5 * GIB)
    assert available_memory_bytes(torch.device("mps")) == 15 * GIB


OUT_OF_MEMORY = [
    torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB"),
    RuntimeError("MPS backend out of memory (MPS allocated: 17.00 GB, other allocations: 1 GB)"),
    RuntimeError("[enforce fail at alloc_cpu.cpp:117] data. DefaultCPUAllocator: can't allocate "
                 "memory: you tried to allocate 1099511627776 bytes. Error code 12"),  # fmt: skip
    MemoryError(),
]


@pytest.fixture
def dit_raises(monkeypatch):
    """Make the DiT's forward raise the error put in the returned list."""
    error: list[BaseException] = []

    def forward(self, *args, **kwargs):
        raise error[0]

    monkeypatch.setattr(SeedVR2DiT, "forward", forward)
    return error


@pytest.mark.parametrize("error", OUT_OF_MEMORY, ids=["cuda", "mps", "cpu", "python"])
def test_every_kind_of_out_of_memory_is_one_line_with_advice(restorer, dit_raises, tmp_path, error):
    dit_raises.append(error)
    with pytest.raises(OutOfMemory) as caught:
        restorer.restore(np.zeros((5, 24, 32, 3), np.float32))
    message = str(caught.value)
    assert message.startswith("out of cpu memory restoring 32x24 frames to 32x24 in batches of up to 5")
    assert "batch_size=1" in message and "\n" not in message
    source = write_image(tmp_path / "in.png", np.zeros((24, 32, 3), np.uint8), "rgb24")
    with pytest.raises(OutOfMemory, match=f"^{source}: out of cpu memory"):
        restore_file(restorer, Job(source, tmp_path / "out.png"))
    assert not (tmp_path / "out.png").exists()


def test_cli_reports_a_cpu_allocation_failure_as_one_line(tiny_model, dit_raises, tmp_path, capsys):
    dit_raises.append(OUT_OF_MEMORY[2])
    source = write_image(tmp_path / "in.png", np.zeros((24, 32, 3), np.uint8), "rgb24")
    assert _cli(tiny_model, source, "-o", tmp_path / "out.png") == 1
    error = capsys.readouterr().err.strip()
    assert len(error.splitlines()) == 1 and "in.png: out of cpu memory" in error


def test_other_runtime_errors_keep_their_traceback(restorer, dit_raises):
    dit_raises.append(RuntimeError("mat1 and mat2 shapes cannot be multiplied"))
    with pytest.raises(RuntimeError, match="shapes cannot be multiplied"):
        restorer.restore(np.zeros((24, 32, 3), np.float32))


def test_running_out_while_loading_is_one_line(tiny_model, monkeypatch):
    def load(*args, **kwargs):
        raise OUT_OF_MEMORY[2]

    monkeypatch.setattr(restorer_module, "_load", load)
    with pytest.raises(OutOfMemory, match="out of cpu memory loading model"):
        Restorer.from_pretrained(tiny_model, device="cpu")
