"""``seedvr2 train --dry-run``: the memory estimate against the tensors a real run holds."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from model_fixtures import write_tiny_model
from seedvr2.cli import main
from seedvr2.models import build_dit
from seedvr2.train.config import config_from_dict, load_config
from seedvr2.train.distributed import DistContext
from seedvr2.train.loop import Trainer
from seedvr2.train.memory_estimate import activation_bytes, estimate, fitting_changes
from train_support import make_media, tiny_config, write_config

pytest.importorskip("peft")
CPU = DistContext(0, 1, torch.device("cpu"), "none")


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("estimate")
    return {"model": write_tiny_model(root / "model"), "media": make_media(root / "media")}


def adversarial(files: dict[str, Path], output: Path, lora: dict | None = None,
                **sections: dict) -> dict:
    """A tiny adversarial run on the tiny model folder (its DiT and VAE)."""
    model = str(files["model"])
    return tiny_config(
        files["media"], output, "adversarial",
        model={"dit": None, "init": model, "lora": lora},
        latent={"kind": "vae", "vae": None, "vae_checkpoint": model},
        adversarial={"discriminator_init": model, "head_blocks": [2, 4], "head_heads": 2},
        run={"steps": 1, "device": "cpu", "ema_decay": 0.9}, **sections)


def _part(est, name: str) -> int:
    parts = est.resident + [p for ps in est.phases.values() for p in ps]
    return sum(p.bytes for p in parts if p.name.startswith(name))


def _with(values: dict, section: str, **changes) -> dict:
    return {**values, section: {**values[section], **changes}}


def _phases(values: dict, frames: list[int], size: int) -> dict:
    return _with(values, "data", phases=[{"frames": frames, "sizes": [size]}])


def test_the_estimate_grows_with_crops_frames_and_batch(files: dict[str, Path],
                                                        tmp_path: Path) -> None:
    base = adversarial(files, tmp_path, {"rank": 4})
    small = estimate(config_from_dict(_phases(base, [1, 5], 32))).total
    for bigger in (_phases(base, [1, 5], 64), _phases(base, [1, 9], 32),
                   _with(_phases(base, [1, 5], 32), "data", batch_size=4)):
        assert estimate(config_from_dict(bigger)).total > small


def test_lora_checkpointing_and_a_shared_base_each_lower_the_estimate(
        files: dict[str, Path], tmp_path: Path) -> None:
    values = adversarial(files, tmp_path, {"rank": 4})
    lora = estimate(config_from_dict(values))
    full = estimate(config_from_dict(_with(values, "model", lora=None)))
    assert _part(lora, "weights, generator") < _part(full, "weights, generator") / 10
    assert lora.total < full.total
    checkpointed = estimate(config_from_dict(_with(values, "model", gradient_checkpointing=True)))
    for step in ("generator", "discriminator"):
        assert _part(checkpointed, f"activations, {step}") < _part(lora, f"activations, {step}")
    apart = estimate(config_from_dict(_with(values, "model", lora={"rank": 4,
                                                                   "share_base": False})))
    assert _part(apart, "weights, frozen") == 2 * _part(lora, "weights, frozen")
    assert lora.total < apart.total


def _storage_bytes(tensors) -> int:
    """Bytes of the distinct storages behind ``tensors`` (shared ones once)."""
    storages = {t.untyped_storage().data_ptr(): t.untyped_storage().nbytes() for t in tensors}
    return sum(storages.values())


@pytest.mark.parametrize("lora", [{"rank": 4}, None], ids=["lora", "full"])
def test_weights_gradients_and_optimiser_states_match_a_real_step_exactly(
        files: dict[str, Path], tmp_path: Path, lora: dict | None) -> None:
    cfg = config_from_dict(adversarial(files, tmp_path / "run", lora))
    est = estimate(cfg)
    trainer = Trainer(cfg, CPU)
    stage = trainer.stage
    modules = [*stage.networks.values(), stage.codec.vae]
    assert _storage_bytes(p for m in modules for p in m.parameters()) == _part(est, "weights") \
        + _part(est, "EMA copy")
    grads: dict[str, int] = {}
    for name, updater in stage.updaters.items():
        step = updater.optimizer.step

        def counted(name=name, updater=updater, step=step) -> None:
            every = [p.grad for m in modules for p in m.parameters() if p.grad is not None]
            grads[name] = _storage_bytes(every)  # what holds a gradient now: this network only
            step()

        updater.optimizer.step = counted
    stage.train_step(0, [next(trainer.batches(trainer.dataset()))])
    for name, updater in stage.updaters.items():
        assert grads[name] == _part(est, f"gradients, {name}"), name
        states = [v for s in updater.optimizer.state.values() for v in s.values()]
        assert _storage_bytes(states) == _part(est, f"optimiser, {name}"), name


def test_activations_are_within_a_quarter_of_what_autograd_saves() -> None:
    """The per-token model against the bytes a CPU forward saves for backward (no
    checkpointing; fp32 and bf16 autocast save about the same bytes)."""
    dit = build_dit("3b-tiny")
    params = {p.untyped_storage().data_ptr() for p in dit.parameters()}
    saved: dict[int, int] = {}

    def pack(x: torch.Tensor) -> torch.Tensor:
        if x.untyped_storage().data_ptr() not in params:
            saved[x.untyped_storage().data_ptr()] = x.untyped_storage().nbytes()
        return x

    c, (t, h, w) = dit.config, (3, 16, 16)
    rows, txt = torch.randn(t * h * w, c.vid_in_channels), torch.randn(4, c.txt_in_dim)
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda x: x):
        dit(rows, txt, torch.tensor([[t, h, w]]), torch.tensor([[4]]), torch.tensor([500.0]))
    tokens = t * h * w // 4
    model = activation_bytes(c, tokens, [(1, c.num_layers)], checkpointing=False)
    assert 0.75 < sum(saved.values()) / model < 1.25


def test_dry_run_says_what_would_fit(files: dict[str, Path], tmp_path: Path,
                                     capsys: pytest.CaptureFixture) -> None:
    values = _with(adversarial(files, tmp_path / "run", {"rank": 4}), "data", batch_size=4)
    total = estimate(config_from_dict(values)).total
    config = write_config(tmp_path / "run.yaml", values)
    assert main(["train", str(config), "--dry-run", "--gpu-memory", f"{total // 2**20}MiB"]) == 0
    out = capsys.readouterr().out
    assert "one base for G and D" in out and "does not fit the memory given" in out
    ways = fitting_changes(config_from_dict(values), total - 2**20)
    assert ["data.batch_size=2"] in ways and ["model.gradient_checkpointing=true"] in ways
    assert "data.batch_size=2" in out.splitlines()[-1]
    for way in ways:  # each piece of advice does fit
        changed = load_config(config, way)
        assert estimate(changed).total <= total - 2**20, way
    assert not (tmp_path / "run").exists()  # nothing trained, nothing written
    assert main(["train", str(config), "--dry-run", "--gpu-memory", "80GB"]) == 0
    assert "fits the memory given (74.5 GiB)" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        main(["train", str(config), "--dry-run", "--gpu-memory", "24 parsecs"])
