"""Quantised weights (GGUF, fp8), ``seedvr2 convert`` and DiT block swap.

Golden checks run the golden dit3b (4 blocks, width 256) with weights converted to each format
against its float32 output. Tolerances (relative L2 error of the DiT output, float32 compute) are
about twice the error measured here, well apart from each other and far below the ~1 a wrong
layout, a missing scale or a transposed matrix gives:
- fp8 e4m3 (3 mantissa bits, relative rounding <= 2^-4): 4.0e-3 measured -> 1e-2;
- fp8 e5m2 (2 mantissa bits, <= 2^-3): 7.6e-3 (8.2e-3 scaled) -> 2e-2;
- GGUF Q8_0 (8 bits per 32-block with a shared fp16 scale, every matrix quantised, the
  embeddings and projections too): 8.5e-3 -> 2e-2;
- GGUF Q4_K (4 bits, 6-bit sub-block scales, our plain min/max quantiser): 0.13 -> 0.25.
F16/BF16/F32 GGUF and bf16 conversion are exact on these bf16-representable weights.
"""

from __future__ import annotations

import json
import logging
import stat
import sys
from pathlib import Path

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import save_file

from golden import inputs, load, rel_error, weights
from seedvr2.cli import main
from seedvr2.errors import CheckpointError, InputError, OutputError
from seedvr2.models import build_dit
from seedvr2.pipeline.block_swap import BlockSwap, attach_block_swap
from seedvr2.pipeline.options import RuntimeOptions
from seedvr2.weights import load_state_dict_file
from seedvr2.weights.convert import convert_weights
from seedvr2.weights.digests import sha256_of
from seedvr2.weights.gguf_files import CONFIG_KEY, ORIG_SHAPE_KEY, save_gguf
from seedvr2.weights.networks import load_dit

GGUF_TOL = {"Q8_0": 2e-2, "Q4_K": 0.25}
FP8_TOL = {"fp8_e4m3": 1e-2, "fp8_e5m2": 2e-2}


@pytest.fixture(scope="module")
def golden() -> tuple[dict[str, torch.Tensor], str]:
    """The golden dit3b tensors and its config (JSON)."""
    tensors, meta = load("dit3b.safetensors")
    return tensors, meta["config"]


@pytest.fixture(scope="module")
def source(golden, tmp_path_factory) -> Path:
    """The golden dit3b weights as a plain safetensors file with its config."""
    tensors, config = golden
    path = tmp_path_factory.mktemp("source") / "dit.safetensors"
    state = {k: v.contiguous() for k, v in weights(tensors).items()}
    save_file(state, path, metadata={"config": config})
    return path


@torch.no_grad()
def output_error(path: Path, tensors: dict[str, torch.Tensor]) -> float:
    model = load_dit(path, torch.float32)
    return rel_error(model(**inputs(tensors)), tensors["out.vid_sample"])


# -- GGUF -------------------------------------------------------------------------------------


@pytest.mark.parametrize("quantization", list(GGUF_TOL))
def test_gguf_quantised_dit_matches_the_golden_output(
    golden, tmp_path: Path, quantization: str
) -> None:
    pytest.importorskip("gguf")
    tensors, config = golden
    path = save_gguf(weights(tensors), tmp_path / "dit.gguf", quantization, {CONFIG_KEY: config})
    assert output_error(path, tensors) < GGUF_TOL[quantization]


@pytest.mark.parametrize("quantization", ["F32", "F16", "BF16"])
def test_gguf_float_types_are_exact_and_keep_torch_shapes(
    tmp_path: Path, quantization: str
) -> None:
    gguf = pytest.importorskip("gguf")
    values = torch.randn(3, 64).bfloat16().float()  # exact in f16 and bf16 at this range
    state = {
        "proj.weight": values,  # (out 3, in 64): stored as GGUF [64, 3]
        "conv.weight": (torch.arange(720) % 128).float().reshape(2, 3, 4, 5, 6),  # bf16-exact
        "norm.weight": torch.ones(64),
    }
    path = save_gguf(state, tmp_path / "w.gguf", quantization)
    stored = {t.name: t for t in gguf.GGUFReader(path).tensors}
    assert list(stored["proj.weight"].shape) == [64, 3]  # innermost dimension first
    assert ORIG_SHAPE_KEY + "conv.weight" in gguf.GGUFReader(path).fields  # > 4 dimensions
    loaded = load_state_dict_file(path)
    assert loaded["proj.weight"].dtype == {"F32": torch.float32, "F16": torch.float16,
                                           "BF16": torch.bfloat16}[quantization]  # fmt: skip
    for name, value in state.items():
        assert torch.equal(loaded[name].float(), value), name
    assert load_state_dict_file(path, dtype=torch.bfloat16)["norm.weight"].dtype == torch.bfloat16


def test_gguf_without_the_package_names_the_extra(tmp_path: Path, monkeypatch) -> None:
    path = tmp_path / "dit.gguf"
    path.write_bytes(b"GGUF")
    monkeypatch.setitem(sys.modules, "gguf", None)  # import gguf -> ImportError
    with pytest.raises(CheckpointError, match=r'pip install "seedvr2\[gguf\]"'):
        load_state_dict_file(path)


def test_corrupt_gguf_is_a_checkpoint_error(tmp_path: Path) -> None:
    pytest.importorskip("gguf")
    path = tmp_path / "dit.gguf"
    path.write_bytes(b"not a gguf file at all")
    with pytest.raises(CheckpointError, match="not a readable GGUF"):
        load_state_dict_file(path)


# -- fp8 and convert --------------------------------------------------------------------------


@pytest.mark.parametrize(("target", "scaled"), [("fp8_e4m3", True), ("fp8_e5m2", False)])
def test_mixed_fp8_dit_matches_the_golden_output(
    golden, source: Path, tmp_path: Path, target: str, scaled: bool
) -> None:
    out = convert_weights(source, tmp_path / "dit.safetensors", target, scaled)
    fp8 = {"fp8_e4m3": torch.float8_e4m3fn, "fp8_e5m2": torch.float8_e5m2}[target]
    with safe_open(out.path, "pt") as f:
        dtypes = {k: f.get_slice(k).get_dtype() for k in f.keys()}  # noqa: SIM118
        stored = {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118
    # mixed: block matrices fp8, norms / biases / modulation / embeddings bf16, RoPE kept
    assert stored["blocks.0.mlp.vid.proj_in.weight"].dtype == fp8
    assert stored["blocks.3.attn.proj_qkv.all.weight"].dtype == fp8
    for name in ("blocks.0.attn.proj_out.vid.bias", "blocks.0.ada.vid.attn_gate",
                 "blocks.0.attn.norm_q.vid.weight", "emb_in.proj_in.weight", "vid_in.proj.weight"):
        assert stored[name].dtype == torch.bfloat16, name  # fmt: skip
    assert stored["blocks.0.attn.rope.rope.freqs"].dtype == torch.float32
    scales = [k for k in dtypes if ".scale_" in k]
    assert len(scales) == (out.fp8_tensors if scaled else 0) and out.fp8_tensors == 30
    assert all(stored[k].dtype == torch.float32 and stored[k].numel() == 1 for k in scales)
    assert output_error(out.path, golden[0]) < FP8_TOL[target]


def test_convert_keeps_config_writes_manifest_and_refuses_overwrite(
    golden, source: Path, tmp_path: Path, umask_002: int
) -> None:
    target = tmp_path / "dit_bf16.safetensors"
    out = convert_weights(source, target, "bf16")
    with safe_open(target, "pt") as f:
        assert json.loads(f.metadata()["config"]) == json.loads(golden[1])
    assert out.manifest.read_text() == f"{sha256_of(target)}  {target.name}\n"
    loaded = load_state_dict_file(target)
    assert all(torch.equal(loaded[k].float(), v) for k, v in weights(golden[0]).items())
    before = target.read_bytes()
    with pytest.raises(OutputError, match="overwrite=True"):
        convert_weights(source, target, "fp16")
    assert target.read_bytes() == before
    convert_weights(source, target, "fp16", overwrite=True)
    assert load_state_dict_file(target)["txt_in.weight"].dtype == torch.float16
    assert sorted(p.name for p in tmp_path.iterdir()) == [target.name, out.manifest.name]
    for path in (target, out.manifest):  # the umask's, not safetensors' private 0o600
        assert stat.S_IMODE(path.stat().st_mode) == umask_002, path.name


def test_convert_refuses_values_the_target_cannot_hold(tmp_path: Path) -> None:
    path = tmp_path / "big.safetensors"
    save_file({"blocks.0.mlp.all.proj_in.weight": torch.full((4, 4), 1e5)}, path)
    with pytest.raises(CheckpointError, match="overflows"):
        convert_weights(path, tmp_path / "a.safetensors", "fp16")
    with pytest.raises(CheckpointError, match="--scaled"):
        convert_weights(path, tmp_path / "b.safetensors", "fp8_e4m3")
    scaled = convert_weights(path, tmp_path / "c.safetensors", "fp8_e4m3", scaled=True)
    assert torch.equal(load_state_dict_file(scaled.path)["blocks.0.mlp.all.proj_in.weight"],
                       torch.full((4, 4), 1e5))  # fmt: skip
    assert not (tmp_path / "a.safetensors").exists() and not (tmp_path / "b.safetensors").exists()


def test_convert_command(source: Path, tmp_path: Path, capsys) -> None:
    target = tmp_path / "dit_fp8.safetensors"
    args = ["convert", str(source), str(target), "--dtype", "fp8_e5m2", "--scaled"]
    assert main(args) == 0
    assert "30 of 103 tensors in fp8" in capsys.readouterr().out
    assert main(args) == 1
    assert "exists; pass --overwrite" in capsys.readouterr().err
    assert main([*args, "--overwrite"]) == 0


# -- block swap -------------------------------------------------------------------------------


@torch.no_grad()
def test_block_swap_streams_blocks_and_keeps_outputs_identical(golden) -> None:
    tensors, config = golden
    dit = build_dit(json.loads(config)).eval()
    dit.load_state_dict(weights(tensors))
    expected = dit(**inputs(tensors))
    swap = BlockSwap(dit, 2, torch.device("cpu"))  # the mechanism, CPU -> CPU copies
    assert swap.swapped == [2, 3]
    home = {i: [p.data_ptr() for p in dit.blocks[i].parameters()] for i in swap.swapped}
    seen = []

    def spy(index: int):
        def hook(module, args) -> None:  # runs after the swap's pre-hook
            ptrs = [p.data_ptr() for p in module.parameters()]
            seen.append((index, set(swap.resident), index in home and ptrs != home[index]))
        return hook

    for index, block in enumerate(dit.blocks):
        block.register_forward_pre_hook(spy(index))
    assert torch.equal(dit(**inputs(tensors)), expected)
    # swapped blocks run from fresh copies, one at a time; the others are never touched
    assert seen == [(0, set(), False), (1, set(), False), (2, {2}, True), (3, {3}, True)]
    assert swap.resident == set()
    for index in swap.swapped:  # back on their CPU copies after use
        assert [p.data_ptr() for p in dit.blocks[index].parameters()] == home[index]
        assert all(p.device.type == "cpu" for p in dit.blocks[index].parameters())
    swap.remove()
    seen.clear()
    assert torch.equal(dit(**inputs(tensors)), expected)
    assert all(not copied for *_, copied in seen)


def test_block_swap_on_the_cpu_is_a_no_op_with_a_warning(golden, caplog) -> None:
    dit = build_dit(json.loads(golden[1]), device="meta")
    with caplog.at_level(logging.WARNING):
        assert attach_block_swap(dit, 2, torch.device("cpu")) is None
    assert "no effect on the CPU" in caplog.text
    assert attach_block_swap(dit, 0, torch.device("cpu")) is None


def test_block_swap_count_is_checked(golden) -> None:
    dit = build_dit(json.loads(golden[1]), device="meta")
    with pytest.raises(InputError, match="between 1 and the DiT's 4 blocks"):
        BlockSwap(dit, 5, torch.device("cpu"))
    with pytest.raises(InputError, match="swap_blocks must be >= 0"):
        RuntimeOptions(swap_blocks=-1)
