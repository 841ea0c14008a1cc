"""Training run configs: loading, overrides, and errors that name the bad key."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from seedvr2.errors import ConfigError
from seedvr2.train.config import config_from_dict, load_config
from seedvr2.train.data import build_degrader

CONFIGS = sorted((Path(__file__).parents[1] / "configs" / "train").glob("*.yaml"))


@pytest.mark.parametrize("path", CONFIGS, ids=[p.stem for p in CONFIGS])
def test_example_configs_load(path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = load_config(path)
    assert cfg.stage in ("diffusion", "distill", "fidelity", "adversarial", "vae")
    if cfg.data.degradation is not None:  # the configs exist and their scales fit data.scale
        monkeypatch.chdir(path.parents[2])  # config paths are relative to the repository
        build_degrader(cfg.data.degradation, cfg.data.scale)


def test_example_configs_cover_every_stage_and_both_sizes() -> None:
    names = {p.stem for p in CONFIGS}
    for stage in ("vae", "diffusion", "distill", "adversarial"):
        assert f"tiny_{stage}" in names
    for stage in ("diffusion", "distill", "adversarial"):
        assert f"paper_7b_{stage}" in names


def test_dotted_overrides_parse_values_as_yaml(tmp_path: Path) -> None:
    cfg = load_config(None, ["data.roots=[a, b]", "optim.lr=3e-5", "run.grad_clip=null",
                             "data.phases=[{frames: [1, 5], sizes: [64]}]", "model.dit=7b-tiny"])
    assert cfg.data.roots == ("a", "b")
    assert cfg.optim.lr == 3e-5 and cfg.run.grad_clip is None
    assert cfg.data.phases[0].frames == (1, 5) and cfg.model.dit == "7b-tiny"


def test_resolved_config_round_trips() -> None:
    cfg = load_config(None, ["data.roots=[a]", "model.dit={dim: 64, heads: 1}"])
    assert config_from_dict(cfg.to_dict()) == cfg


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("data.workerz=2", "unknown key data.workerz"),
        ("run.steps=ten", "run.steps: expected an integer"),
        ("run.precision=fp16", "run.precision: 'fp16' is not one of"),
        ("optim.betas=[0.9]", "optim.betas: expected 2 values"),
        ("data.phases=[{frames: [0]}]", r"data.phases\[0\].frames"),
        ("data.phases=[{start_step: 5}]", r"data.phases\[0\].start_step"),
        ("distill.teacher_steps=48", "distill.teacher_steps: must be a power of two"),
        ("run.ema_decay=1.5", "run.ema_decay"),
        ("fidelity.l1_weight=0", "fidelity.mse_weight: .* all 0"),
        ("fidelity.relative_mse_floor=0", "fidelity.relative_mse_floor: must be > 0"),
        ("fidelity.excess_mse_floor=-1", "fidelity.excess_mse_floor: must be > 0"),
    ],
)
def test_bad_values_name_their_key(override: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_config(None, ["data.roots=[a]", override])


def test_missing_data_and_missing_file_are_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="data.roots"):
        load_config(None)
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "nope.yaml")


@pytest.mark.parametrize("name", ["tiny_vae", "tiny_diffusion", "tiny_distill", "tiny_adversarial"])
def test_tiny_example_configs_build_their_stage(name: str) -> None:
    """Networks, codec and text fit together (starting weights left out: they come from runs)."""
    from seedvr2.train.distributed import DistContext
    from seedvr2.train.loop import build_stage

    cfg = load_config(CONFIGS[0].with_name(f"{name}.yaml"),
                      ["model.init=null", "latent.vae_checkpoint=null",
                       "adversarial.discriminator_init=null", "run.ema_decay=null"])
    stage = build_stage(cfg, DistContext(0, 1, torch.device("cpu"), "none"))
    assert stage.networks and stage.updaters
