"""LoRA fine-tuning: a released-style model folder as the base, adapters out, merged at restore."""

from __future__ import annotations

import csv
import json
import stat
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors import safe_open

from model_fixtures import write_tiny_model
from seedvr2.cli import main
from seedvr2.digests import file_sha256
from seedvr2.errors import CheckpointError, OutputError
from seedvr2.media import read_frames
from seedvr2.pipeline import Restorer
from seedvr2.train import run
from seedvr2.train.checkpoint import load_checkpoint
from seedvr2.train.networks import export_weights
from seedvr2.weights.adapters import (
    BASE_SHA256_KEY,
    CONFIG_FILE,
    WEIGHTS_FILE,
    add_adapter,
    lora_config,
    merge_adapters,
    read_adapter,
    save_adapter,
    to_peft_format,
)
from seedvr2.weights.networks import load_dit
from train_support import make_media, tiny_config, write_config, write_image

peft = pytest.importorskip("peft")


def lora_run(media: Path, model: Path, output: Path, **sections: dict) -> dict:
    """The tiny adversarial config, fine-tuning ``model`` (a model folder) with rank-4 adapters."""
    return tiny_config(
        media, output, "adversarial",
        model={"dit": None, "init": str(model), "lora": {"rank": 4, "alpha": 8}},
        latent={"kind": "vae", "vae": None, "vae_checkpoint": str(model)},
        adversarial={"discriminator_init": str(model), "head_blocks": [2, 4], "head_heads": 2},
        optim={"lr": 5e-2},
        **sections,
    )


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A tiny model folder, a 4-step LoRA run on it, and its exported adapter."""
    root = tmp_path_factory.mktemp("lora")
    model, media = write_tiny_model(root / "model"), make_media(root / "media")
    run(write_config(root / "run.yaml", lora_run(media, model, root / "run")))  # lr 0.05: visible
    adapter = export_weights(root / "run", root / "adapter")
    return {"root": root, "model": model, "media": media, "run": root / "run", "adapter": adapter}


def _frames() -> np.ndarray:  # (f, h, w, 3)
    return np.random.default_rng(0).random((5, 32, 32, 3), dtype=np.float32)


def _dit_inputs(dit: torch.nn.Module) -> tuple:
    """Packed rows of one 1x4x4 latent clip, text, shapes and a timestep."""
    g = torch.Generator().manual_seed(0)
    c = dit.config
    rows = torch.randn(16, c.vid_in_channels, generator=g)
    txt = torch.randn(3, c.txt_in_dim, generator=g)
    return rows, txt, torch.tensor([[1, 4, 4]]), torch.tensor([[3]]), torch.tensor([500.0])


def test_a_fresh_adapter_and_scale_zero_leave_the_base_bit_identical(
        trained: dict[str, Path]) -> None:
    model = trained["model"]
    dit = load_dit(model / "dit.safetensors", torch.float32)
    inputs = _dit_inputs(dit)
    base = dit(*inputs)
    add_adapter(dit, lora_config(4, 8.0, ["attn.proj_qkv", "mlp.proj_out"]), "fresh")
    assert torch.equal(dit(*inputs), base)  # unmerged, B = 0
    frames = _frames()
    plain = Restorer.from_pretrained(model, device="cpu").restore(frames)
    at_zero = Restorer.from_pretrained(model, device="cpu", lora=[f"{trained['adapter']}:0"])
    assert np.array_equal(at_zero.restore(frames), plain)
    adapted = Restorer.from_pretrained(model, device="cpu", lora=[str(trained["adapter"])])
    assert not np.array_equal(adapted.restore(frames), plain)  # the trained adapter does act


def test_merged_adapter_equals_peft_unmerged(trained: dict[str, Path]) -> None:
    """Our merge at load against PEFT's own loader running the adapter unmerged."""
    file = trained["model"] / "dit.safetensors"
    unmerged = peft.PeftModel.from_pretrained(load_dit(file, torch.float32),
                                              str(trained["adapter"]))
    merged = merge_adapters(load_dit(file, torch.float32), [(read_adapter(trained["adapter"]),
                                                             1.0)])
    assert not any("lora" in name for name, _ in merged.named_modules())
    inputs = _dit_inputs(merged)
    expected, got = unmerged(*inputs), merged(*inputs)
    assert not torch.equal(expected, load_dit(file, torch.float32)(*inputs))
    torch.testing.assert_close(got, expected, rtol=0, atol=1e-5)


def test_adapter_round_trips_through_export_and_restore_lora(trained: dict[str, Path],
                                                             tmp_path: Path) -> None:
    adapter, model = tmp_path / "adapter", trained["model"]
    assert main(["export", str(trained["run"]), str(adapter)]) == 0
    config = json.loads((adapter / "adapter_config.json").read_text())
    assert config["peft_type"] == "LORA" and config["r"] == 4 and config["lora_alpha"] == 8
    with safe_open(str(adapter / WEIGHTS_FILE), framework="pt") as handle:
        assert handle.metadata()[BASE_SHA256_KEY] == file_sha256(model / "dit.safetensors")
        ema = load_checkpoint(sorted((trained["run"] / "checkpoints").iterdir())[-1])
        key = "base_model.model.blocks.0.attn.proj_qkv.vid.lora_B.weight"
        assert torch.equal(handle.get_tensor(key),
                           ema["models"]["generator_ema"]["blocks.0.attn.proj_qkv.vid.lora_B."
                                                          "generator.weight"])
    source = write_image(tmp_path / "in.png", (_frames()[0] * 255).astype(np.uint8))
    out = tmp_path / "out.png"
    assert main(["restore", str(source), "-o", str(out), "--model", str(model), "--device", "cpu",
                 "--lora", f"{adapter}:0.5", "-q"]) == 0
    api = Restorer.from_pretrained(model, device="cpu", lora=[f"{adapter}:0.5"]).restore(source)
    base = Restorer.from_pretrained(model, device="cpu").restore(source)
    assert np.abs(api - base).max() > 10 / 255  # the adapter shows at this scale
    np.testing.assert_allclose(read_frames(out)[0], api, atol=1 / 255)
    assert (adapter / WEIGHTS_FILE).stat().st_size < (model / "dit.safetensors").stat().st_size / 10


def test_an_adapter_for_another_base_is_refused(trained: dict[str, Path],
                                                tmp_path: Path) -> None:
    other = write_tiny_model(tmp_path / "other", seed=1)
    with pytest.raises(CheckpointError, match="was made for the DiT .* not for"):
        Restorer.from_pretrained(other, device="cpu", lora=[str(trained["adapter"])])


def test_lora_checkpoints_hold_adapters_only_and_resume_bit_identically(
        trained: dict[str, Path], tmp_path: Path) -> None:
    media, model = trained["media"], trained["model"]
    interrupted = write_config(tmp_path / "b.yaml", lora_run(media, model, tmp_path / "b"))
    run(interrupted, ["run.steps=2"])
    run(interrupted)
    a = load_checkpoint(sorted((trained["run"] / "checkpoints").iterdir())[-1])
    b = load_checkpoint(tmp_path / "b" / "checkpoints" / "step_00000004.pt")
    assert a["step"] == b["step"] == 4
    for part in ("models", "optimizers"):
        assert a[part].keys() == b[part].keys()
    for name, state in a["models"].items():
        assert all(".lora_" in k or not k.startswith("backbone.") for k in state), name  # D heads
        for key, value in state.items():
            assert torch.equal(value, b["models"][name][key]), f"{name}.{key}"


def test_without_peft_seedvr2_imports_and_says_how_to_get_lora() -> None:
    code = """if True:
        import sys
        sys.modules["peft"] = None  # as if not installed
        import seedvr2.pipeline, seedvr2.train.adversarial
        from seedvr2.weights.adapters import lora_config
        lora_config(4, 4.0, ["attn.proj_qkv"])
    """
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 1
    assert 'InputError: LoRA adapters need the PEFT library: pip install "seedvr2[lora]"' \
        in result.stderr.splitlines()[-1]


def _stage(config: dict, tmp_path: Path):
    """The adversarial stage a config dict builds, on the CPU."""
    from seedvr2.train.config import config_from_dict
    from seedvr2.train.distributed import DistContext
    from seedvr2.train.loop import build_stage

    return build_stage(config_from_dict(config), DistContext(0, 1, torch.device("cpu"), "none"))


def _base_storages(module: torch.nn.Module) -> set[int]:
    return {p.untyped_storage().data_ptr() for n, p in module.named_parameters()
            if ".lora_" not in n}


@pytest.mark.parametrize("share", [True, False])
def test_generator_and_discriminator_hold_one_base_when_shared(
        trained: dict[str, Path], tmp_path: Path, share: bool) -> None:
    config = lora_run(trained["media"], trained["model"], tmp_path / "run")
    config["model"]["lora"]["share_base"] = share
    stage = _stage(config, tmp_path)
    generator = stage.generator.inner
    backbone = stage.discriminator.inner.backbone
    g_base, d_base = _base_storages(generator), _base_storages(backbone)
    assert len(g_base) == len(d_base) == len(list(generator.parameters())) - len(
        stage.generator.trainable)
    assert (g_base == d_base) if share else not (g_base & d_base)
    # Each network trains its own adapter only; the EMA holds G's adapter, not D's.
    assert all(".lora_" in n and ".generator." in n for n in stage.generator.trainable)
    d_adapter = [n for n in stage.discriminator.trainable if ".lora_" in n]
    assert d_adapter and all(".discriminator." in n for n in d_adapter)
    ema = stage.generator.ema_module
    assert {n for n, p in ema.named_parameters() if ".lora_" in n} == stage.generator.trainable
    assert _base_storages(ema) == g_base


def test_a_shared_base_trains_exactly_as_two_copies(trained: dict[str, Path],
                                                    tmp_path: Path) -> None:
    """Same seeds, same values: sharing changes where the base lives, not one bit of training."""
    separate = lora_run(trained["media"], trained["model"], tmp_path / "separate")
    separate["model"]["lora"]["share_base"] = False
    run(write_config(tmp_path / "separate.yaml", separate))
    a = load_checkpoint(sorted((trained["run"] / "checkpoints").iterdir())[-1])  # shared
    b = load_checkpoint(tmp_path / "separate" / "checkpoints" / "step_00000004.pt")
    assert a["step"] == b["step"] == 4 and a["models"].keys() == b["models"].keys()
    for name, state in a["models"].items():
        for key, value in state.items():
            assert torch.equal(value, b["models"][name][key]), f"{name}.{key}"
    logs = [list(csv.DictReader((folder / "metrics.csv").open()))
            for folder in (tmp_path / "separate", trained["run"])]
    for row in logs[0] + logs[1]:
        del row["time/step_s"]
    assert len(logs[0]) == 4 and logs[0] == logs[1]  # every loss, every step, to the digit


def test_export_into_a_folder_of_other_files_replaces_only_the_adapter_files(
        trained: dict[str, Path], tmp_path: Path, umask_002: int) -> None:
    folder = tmp_path / "adapter"
    folder.mkdir()
    (folder / "notes.txt").write_text("the user's own file")
    (folder / WEIGHTS_FILE).write_bytes(b"an older adapter")
    with pytest.raises(OutputError, match="is not empty; pass overwrite=True"):
        export_weights(trained["run"], folder)
    with pytest.raises(OutputError, match="is not empty; pass overwrite=True"):
        _random_adapter(trained["model"], folder)  # save_adapter checks on its own
    assert (folder / WEIGHTS_FILE).read_bytes() == b"an older adapter"
    assert sorted(p.name for p in folder.iterdir()) == [WEIGHTS_FILE, "notes.txt"]
    assert export_weights(trained["run"], folder, overwrite=True) == folder
    assert (folder / "notes.txt").read_text() == "the user's own file"
    assert sorted(p.name for p in folder.iterdir()) == [CONFIG_FILE, WEIGHTS_FILE, "notes.txt"]
    for name in (CONFIG_FILE, WEIGHTS_FILE):
        assert stat.S_IMODE((folder / name).stat().st_mode) == umask_002, name
    new, fresh = read_adapter(folder), read_adapter(trained["adapter"])  # as a fresh export
    assert (folder / CONFIG_FILE).read_text() == (fresh.path / CONFIG_FILE).read_text()
    assert new.base_sha256 == fresh.base_sha256 and new.weights.keys() == fresh.weights.keys()
    assert all(torch.equal(new.weights[k], v) for k, v in fresh.weights.items())


def test_weights_and_config_of_two_exports_are_refused(trained: dict[str, Path],
                                                      tmp_path: Path) -> None:
    first = _random_adapter(trained["model"], tmp_path / "first", alpha=8.0)
    second = _random_adapter(trained["model"], tmp_path / "second", alpha=2.0)
    assert read_adapter(first).config.lora_alpha == 8.0
    # an overwrite stopped between its two renames: new weights beside the old config
    (first / WEIGHTS_FILE).write_bytes((second / WEIGHTS_FILE).read_bytes())
    with pytest.raises(CheckpointError, match="not the config its"):
        read_adapter(first)
    assert read_adapter(second).config.lora_alpha == 2.0


def _random_adapter(model: Path, folder: Path, alpha: float = 8.0) -> Path:
    """An adapter of the model's DiT with random (non-zero) A and B, tagged with its base."""
    dit = load_dit(model / "dit.safetensors", torch.float32)
    config = lora_config(4, alpha, ["attn.proj_qkv", "mlp.proj_out"])
    add_adapter(dit, config, "random")
    torch.manual_seed(0)
    state = {k: torch.randn_like(v) * 0.5 for k, v in dit.state_dict().items() if ".lora_" in k}
    return save_adapter(folder, config, to_peft_format(state, "random"),
                        file_sha256(model / "dit.safetensors"), "tiny")


def test_eval_compares_the_model_with_and_without_an_adapter(trained: dict[str, Path],
                                                             tmp_path: Path) -> None:
    model, media = trained["model"], trained["media"]
    adapter = _random_adapter(model, tmp_path / "style")
    out = tmp_path / "eval"
    assert main(["eval", str(media / "c.png"), "-o", str(out), "--model", str(model),
                 "--lora", str(adapter), "--lora", f"{adapter}:0", "--scale", "2",
                 "--metrics", "psnr", "--device", "cpu"]) == 0
    means = json.loads((out / "results.json").read_text())["mean"]
    base, adapted, at_zero = means["model"], means["model + style"], means["model + style:0"]
    assert adapted["psnr"] != base["psnr"]  # the adapter acts
    assert at_zero == base  # scale 0: the base exactly, so the rows compare like for like
    assert main(["eval", str(media / "c.png"), "-o", str(out), "--no-model",
                 "--lora", str(adapter)]) == 1


def test_adapters_train_in_fp32_over_a_bf16_base() -> None:
    """PEFT gives new adapters the base's dtype; bf16 would round small Adam updates away."""
    from seedvr2.models import build_dit
    from seedvr2.train.config import LoRAConfig
    from seedvr2.train.networks import adapt

    dit = adapt(build_dit("3b-tiny"), LoRAConfig(rank=4, base_dtype="bf16"), 0, 0, "g")
    dtypes = {(p.requires_grad, ".lora_" in n, p.dtype) for n, p in dit.named_parameters()}
    assert dtypes == {(True, True, torch.float32), (False, False, torch.bfloat16)}
