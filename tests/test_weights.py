"""Weights: file formats and dtypes, fp8 dequantisation, strict loading and its diagnoses."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file
from torch import nn

from golden import golden_path, load, weights
from seedvr2.errors import CheckpointError
from seedvr2.weights import (
    load_into,
    load_state_dict_file,
    load_text_embedding,
    state_dict_summary,
)

SUFFIXES = (".safetensors", ".pth", ".pt", ".bin")
Shapes = dict[str, tuple[int, ...]]


def save(state: object, path: Path) -> Path:
    if path.suffix == ".safetensors":
        save_file(state, path)
    else:
        torch.save(state, path)
    return path


def small_model() -> nn.Module:
    """Float weights plus an int64 buffer (``1.num_batches_tracked``)."""
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(8, 4), nn.BatchNorm1d(4))


def module_with(shapes: Shapes, device: str = "meta") -> nn.Module:
    """A module whose state dict has exactly these names and shapes."""
    root = nn.Module()
    for name, shape in shapes.items():
        *path, leaf = name.split(".")
        module = root
        for part in path:
            if not hasattr(module, part):
                module.add_module(part, nn.Module())
            module = getattr(module, part)
        module.register_parameter(leaf, nn.Parameter(torch.empty(shape, device=device)))
    return root


def tensors_like(shapes: Shapes, device: str = "cpu") -> dict[str, torch.Tensor]:
    return {name: torch.zeros(shape, device=device) for name, shape in shapes.items()}


def dit_shapes(width: int, depth: int, two_stream: int, mlp: str) -> Shapes:
    """Key names and shapes of the official DiT layouts, shrunk (spec §1.1)."""
    shapes: Shapes = {
        "vid_in.proj.weight": (width, 132),
        "txt_in.weight": (width, 64),
        "vid_out.proj.weight": (64, width),
    }
    for i in range(depth):
        streams = ("vid", "txt") if i < two_stream else ("all",)
        for s in streams:
            shapes[f"blocks.{i}.attn.proj_qkv.{s}.weight"] = (3 * width, width)
            shapes[f"blocks.{i}.attn.rope.rope.freqs"] = (21,)
            if mlp == "swiglu":
                shapes[f"blocks.{i}.mlp.{s}.proj_in_gate.weight"] = (2 * width, width)
                shapes[f"blocks.{i}.mlp.{s}.proj_in.weight"] = (2 * width, width)
            else:
                shapes[f"blocks.{i}.mlp.{s}.proj_in.weight"] = (4 * width, width)
                shapes[f"blocks.{i}.mlp.{s}.proj_in.bias"] = (4 * width,)
    return shapes


DIT_3B = dit_shapes(width=16, depth=4, two_stream=2, mlp="swiglu")
DIT_7B = dit_shapes(width=24, depth=5, two_stream=5, mlp="gelu")
VAE = {"encoder.conv_in.weight": (8, 3, 3, 3, 3), "decoder.conv_out.weight": (3, 8, 3, 3, 3)}


# --- formats ------------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16])
@pytest.mark.parametrize("suffix", SUFFIXES)
def test_round_trip_keeps_values_and_dtypes(
    tmp_path: Path, suffix: str, dtype: torch.dtype
) -> None:
    state = small_model().to(dtype).state_dict()
    loaded = load_state_dict_file(save(state, tmp_path / f"w{suffix}"))
    assert sorted(loaded) == sorted(state)
    for name, tensor in state.items():
        assert loaded[name].dtype == tensor.dtype and torch.equal(loaded[name], tensor)


@pytest.mark.parametrize("suffix", SUFFIXES)
def test_cast_on_load_leaves_integer_tensors_alone(tmp_path: Path, suffix: str) -> None:
    state = small_model().state_dict()
    loaded = load_state_dict_file(save(state, tmp_path / f"w{suffix}"), dtype=torch.bfloat16)
    assert loaded["0.weight"].dtype == torch.bfloat16
    assert torch.equal(loaded["0.weight"], state["0.weight"].bfloat16())
    assert loaded["1.num_batches_tracked"].dtype == torch.int64


def test_legacy_pickle_format_loads_without_mmap(tmp_path: Path) -> None:
    state = small_model().state_dict()
    torch.save(state, tmp_path / "w.pth", _use_new_zipfile_serialization=False)
    loaded = load_state_dict_file(tmp_path / "w.pth")
    assert all(torch.equal(loaded[k], v) for k, v in state.items())


@pytest.mark.parametrize("container", ["state_dict", "model", "ema", "module"])
def test_known_containers_are_unwrapped(tmp_path: Path, container: str) -> None:
    state = small_model().state_dict()
    wrapped = {container: state, "step": 10, "optimizer": {"lr": 1e-4}}
    loaded = load_state_dict_file(save(wrapped, tmp_path / "w.pth"))
    assert list(loaded) == list(state)


def test_ambiguous_container_is_refused(tmp_path: Path) -> None:
    state = small_model().state_dict()
    path = save({"model": state, "ema": state}, tmp_path / "w.pth")
    with pytest.raises(CheckpointError, match="several state dicts"):
        load_state_dict_file(path)


def test_unknown_container_is_refused(tmp_path: Path) -> None:
    path = save({"weights": small_model().state_dict(), "epoch": 3}, tmp_path / "w.pth")
    with pytest.raises(CheckpointError, match="not a state dict.*epoch"):
        load_state_dict_file(path)


# Round-to-nearest fp8 keeps a relative error <= 2^-(mantissa bits + 1) for normal numbers:
# 2^-4 = 6.25% for e4m3 (3 bits, normals from 2^-6 to 448), 2^-3 = 12.5% for e5m2 (2 bits,
# normals from 2^-14 to 57344). The sources below lie in both normal ranges (|x| in [2^-5, 2^8]).
FP8_RELATIVE_TOL = {torch.float8_e4m3fn: 2.0**-4, torch.float8_e5m2: 2.0**-3}


def _normal_range_source(shape: tuple[int, ...]) -> torch.Tensor:
    gen = torch.Generator().manual_seed(0)
    magnitude = 2.0 ** (torch.rand(shape, generator=gen) * 13 - 5)
    sign = torch.where(torch.rand(shape, generator=gen) < 0.5, -1.0, 1.0)
    return sign * magnitude


@pytest.mark.parametrize("fp8", list(FP8_RELATIVE_TOL))
@pytest.mark.parametrize("suffix", [".safetensors", ".pth"])
def test_fp8_is_dequantised_within_its_precision(
    tmp_path: Path, suffix: str, fp8: torch.dtype
) -> None:
    source = _normal_range_source((64, 32))
    path = save({"layer.weight": source.to(fp8)}, tmp_path / f"w{suffix}")
    loaded = load_state_dict_file(path)["layer.weight"]
    assert loaded.dtype == torch.float32
    assert torch.all((loaded - source).abs() <= FP8_RELATIVE_TOL[fp8] * source.abs())
    assert load_state_dict_file(path, dtype=torch.bfloat16)["layer.weight"].dtype == torch.bfloat16


@pytest.mark.parametrize("fp8", list(FP8_RELATIVE_TOL))
def test_scaled_fp8_is_multiplied_by_its_scale(tmp_path: Path, fp8: torch.dtype) -> None:
    source = _normal_range_source((64, 32)) * 300.0  # beyond e4m3's 448 without the scale
    scale = source.abs().max() / 256.0
    quantised = (source / scale).to(fp8)
    state = {"layer.weight": quantised, "layer.scale_weight": scale, "layer.bias": torch.ones(64)}
    loaded = load_state_dict_file(save(state, tmp_path / "w.safetensors"))
    assert sorted(loaded) == ["layer.bias", "layer.weight"]  # the scale is consumed
    assert torch.equal(loaded["layer.weight"], quantised.float() * scale)
    assert torch.all(
        (loaded["layer.weight"] - source).abs() <= FP8_RELATIVE_TOL[fp8] * source.abs()
    )


def test_per_channel_fp8_scale_is_refused(tmp_path: Path) -> None:
    state = {
        "layer.weight": torch.ones(4, 4).to(torch.float8_e4m3fn),
        "layer.scale_weight": torch.ones(4),
    }
    with pytest.raises(CheckpointError, match="one scale per tensor"):
        load_state_dict_file(save(state, tmp_path / "w.safetensors"))


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match="does not exist"):
        load_state_dict_file(tmp_path / "absent.safetensors")


def test_unsupported_suffix(tmp_path: Path) -> None:
    (tmp_path / "w.onnx").write_bytes(b"ONNX")
    with pytest.raises(CheckpointError, match="unsupported weights format '.onnx'"):
        load_state_dict_file(tmp_path / "w.onnx")


@pytest.mark.parametrize("suffix", [".safetensors", ".pth"])
def test_truncated_file(tmp_path: Path, suffix: str) -> None:
    path = save(small_model().state_dict(), tmp_path / f"w{suffix}")
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(CheckpointError, match="not a readable"):
        load_state_dict_file(path)


def test_garbage_file(tmp_path: Path) -> None:
    (tmp_path / "w.pt").write_bytes(b"\x00not a checkpoint" * 10)
    with pytest.raises(CheckpointError, match=r"w\.pt is not a readable PyTorch file"):
        load_state_dict_file(tmp_path / "w.pt")


class Payload:
    """An arbitrary Python object, which weights_only loading must refuse."""


def test_pickled_objects_are_refused(tmp_path: Path) -> None:
    path = save({"weight": torch.zeros(2), "extra": Payload()}, tmp_path / "w.pth")
    with pytest.raises(CheckpointError, match=r"test_weights\.Payload\) besides tensors"):
        load_state_dict_file(path)


# --- strict loading -----------------------------------------------------------------------------


def test_load_into_a_meta_model_assigns_the_tensors() -> None:
    source = small_model().eval()
    state = source.state_dict()
    with torch.device("meta"):
        model = small_model().eval()
    load_into(model, state)
    assert model[0].weight.data_ptr() == state["0.weight"].data_ptr()  # assigned, not copied
    x = torch.randn(3, 8)
    assert torch.equal(model(x), source(x))


def test_missing_and_unexpected_keys_are_listed() -> None:
    model = module_with({"a.weight": (2,), "b.weight": (2,)})
    with pytest.raises(CheckpointError) as err:
        load_into(model, tensors_like({"a.weight": (2,), "c.weight": (2,)}))
    message = str(err.value)
    assert "missing (1): b.weight" in message and "unexpected (1): c.weight" in message


def test_long_key_lists_are_cut_with_a_count() -> None:
    model = module_with({f"m{i}.weight": (1,) for i in range(25)})
    with pytest.raises(CheckpointError, match=r"missing \(25\): m0\.weight.*\(\+15 more\)"):
        load_into(model, {})


def test_shape_mismatches_name_expected_and_got() -> None:
    model = module_with({"proj.weight": (2560, 132)})
    with pytest.raises(
        CheckpointError, match=r"proj\.weight expected \(2560, 132\) got \(3072, 132\)"
    ):
        load_into(model, {"proj.weight": torch.empty(3072, 132, device="meta")})


def test_non_strict_loading_reports_missing_keys_but_not_shapes() -> None:
    model = module_with({"a.weight": (2,), "b.weight": (2,)})
    missing, unexpected = load_into(model, tensors_like({"a.weight": (2,)}), strict=False)
    assert (missing, unexpected) == (["b.weight"], [])
    assert model.a.weight.device.type == "cpu"
    with pytest.raises(CheckpointError, match="mis-shaped"):
        load_into(model, tensors_like({"a.weight": (3,)}), strict=False)


@pytest.mark.parametrize(
    ("model_shapes", "file_shapes", "cause"),
    [
        (DIT_3B, DIT_7B, "a 7B-structure DiT file (5 of 5 blocks two-stream) for a 3B-structure"),
        (DIT_7B, DIT_3B, "a 3B-structure DiT file (2 of 4 blocks two-stream) for a 7B-structure"),
        (DIT_3B, VAE, "a VAE file was given as the DiT"),
        (VAE, DIT_7B, "a DiT file was given as the VAE"),
        (DIT_3B, dit_shapes(24, 4, 2, "swiglu"), "width 24 in the file, 16 in the model"),
        (
            DIT_3B,
            dit_shapes(16, 4, 3, "swiglu"),
            "two-stream blocks: 3 in the file, 2 in the model",
        ),
        (DIT_3B, {f"module.{k}": v for k, v in DIT_3B.items()}, "prefix 'module.'"),
    ],
    ids=["7b-into-3b", "3b-into-7b", "vae-as-dit", "dit-as-vae", "width", "two-stream", "prefix"],
)
def test_mismatch_names_the_likely_cause(
    model_shapes: Shapes, file_shapes: Shapes, cause: str
) -> None:
    with pytest.raises(CheckpointError) as err:
        load_into(module_with(model_shapes), tensors_like(file_shapes, device="meta"))
    assert cause in str(err.value)


def manifest(name: str) -> Shapes:
    return {k: tuple(v) for k, v in json.loads(golden_path(name).read_text()).items()}


def test_full_size_7b_file_into_3b_model() -> None:
    model = module_with(manifest("manifest_dit3b.json"))
    with pytest.raises(CheckpointError) as err:
        load_into(model, tensors_like(manifest("manifest_dit7b.json"), "meta"))
    message = str(err.value)
    assert (
        "a 7B-structure DiT file (36 of 36 blocks two-stream) for a 3B-structure model" in message
    )
    assert "width 3072 in the file, 2560 in the model" in message
    assert "blocks.0.mlp.vid.proj_in.bias" in message  # the GELU MLP's biases are unexpected
    assert "blocks.0.mlp.vid.proj_in_gate.weight" in message  # the SwiGLU gates are missing


# --- summaries ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        (
            "manifest_dit3b.json",
            "DiT, 3B structure (SeedVR2-3B), width 2560, 32 blocks (10 two-stream), "
            "3,391,475,776 parameters",
        ),
        (
            "manifest_dit7b.json",
            "DiT, 7B structure (SeedVR2-7B), width 3072, 36 blocks (36 two-stream), "
            "8,239,607,872 parameters",
        ),
        ("manifest_vae.json", "VAE, 128 base channels, 4 down blocks, 250,648,227 parameters"),
    ],
)
def test_summary_of_the_released_checkpoints(name: str, expected: str) -> None:
    shapes = manifest(name)
    summary = str(state_dict_summary(tensors_like(shapes, "meta")))
    assert summary.startswith(expected) and summary.endswith(f"({len(shapes)} float32)")


@pytest.mark.parametrize("name", ["dit3b", "dit7b"])
def test_summary_matches_the_golden_configs(name: str) -> None:
    tensors, meta = load(f"{name}.safetensors")
    config = json.loads(meta["config"])
    summary = state_dict_summary(weights(tensors))
    assert (summary.kind, summary.structure) == ("dit", name[-2:].upper())
    assert (summary.width, summary.depth) == (config["vid_dim"], config["num_layers"])
    assert summary.two_stream_depth == config.get("mm_layers", config["num_layers"])


def test_summary_of_an_unknown_checkpoint() -> None:
    summary = state_dict_summary(small_model().state_dict())
    assert summary.kind == "unknown" and summary.parameters == math.prod((4, 8)) + 4 + 4 * 4 + 1
    assert summary.dtypes == {"float32": 6, "int64": 1}


# --- text embeddings ----------------------------------------------------------------------------


@pytest.mark.parametrize("suffix", [".pt", ".safetensors"])
def test_text_embedding_is_cast_to_the_requested_dtype(tmp_path: Path, suffix: str) -> None:
    embedding = torch.randn(7, 32).bfloat16()
    obj = {"pos_emb": embedding} if suffix == ".safetensors" else embedding
    loaded = load_text_embedding(save(obj, tmp_path / f"pos_emb{suffix}"))
    assert loaded.dtype == torch.float32 and torch.equal(loaded, embedding.float())


@pytest.mark.parametrize(
    "obj",
    [
        torch.zeros(7),
        torch.zeros(1, 7, 32),
        torch.zeros(0, 32),
        torch.zeros(7, 32, dtype=torch.int64),
        {"a": torch.zeros(7, 32)},
    ],
    ids=["1-d", "3-d", "empty", "integer", "dict"],
)
def test_text_embedding_must_be_one_2d_float_tensor(tmp_path: Path, obj: object) -> None:
    with pytest.raises(CheckpointError, match="pos_emb.pt"):
        load_text_embedding(save(obj, tmp_path / "pos_emb.pt"))


def test_text_embedding_safetensors_with_two_tensors(tmp_path: Path) -> None:
    path = save({"a": torch.zeros(2, 4), "b": torch.zeros(2, 4)}, tmp_path / "emb.safetensors")
    with pytest.raises(CheckpointError, match="exactly one tensor"):
        load_text_embedding(path)


def test_safetensors_are_written_with_the_same_bytes_every_time(tmp_path: Path) -> None:
    from safetensors import safe_open

    from seedvr2.weights.writing import save_safetensors

    tensors = {"b.weight": torch.arange(6.0).reshape(2, 3), "a": torch.ones(5, dtype=torch.int64)}
    metadata = {f"key{n}": f"value {n} \"quoted\" é" for n in range(6)} | {"config": "{}"}
    paths = [tmp_path / f"{n}.safetensors" for n in range(6)]
    for path in paths:
        save_safetensors(tensors, path, metadata)
    assert len({p.read_bytes() for p in paths}) == 1
    with safe_open(str(paths[0]), framework="pt") as handle:
        assert handle.metadata() == metadata
        assert all(torch.equal(handle.get_tensor(k), v) for k, v in tensors.items())
