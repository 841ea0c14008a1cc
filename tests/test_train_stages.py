"""Each training stage end-to-end on the CPU: runs, learns, resumes bit-identically, chains."""

from __future__ import annotations

import csv
import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file

from seedvr2.cli import main
from seedvr2.errors import OutputError
from seedvr2.models import build_dit
from seedvr2.train import run
from seedvr2.train.checkpoint import load_checkpoint
from seedvr2.train.config import config_from_dict
from seedvr2.train.distributed import DistContext
from seedvr2.train.loop import Trainer
from seedvr2.train.networks import export_weights
from seedvr2.weights import load_into
from train_support import TINY_DIT, make_media, tiny_config, write_config

STAGES = ["vae", "diffusion", "distill", "fidelity", "adversarial"]


@pytest.fixture(scope="module")
def media(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_media(tmp_path_factory.mktemp("media"))


def _config(media: Path, output: Path, stage: str = "diffusion", **sections: dict) -> dict:
    """The tiny config; the VAE stage trains the tiny VAE (the others use pixel-unshuffle)."""
    if stage == "vae":
        sections = {"latent": {"kind": "vae", "vae": "tiny"}, **sections}
    return tiny_config(media, output, stage, **sections)


def _metrics(output: Path) -> list[dict[str, str]]:
    with open(output / "metrics.csv", newline="") as handle:
        return list(csv.DictReader(handle))


def _networks(path: Path) -> dict[str, dict[str, torch.Tensor]]:
    return load_checkpoint(path)["models"]


@pytest.mark.parametrize("stage", STAGES)
def test_stage_runs_end_to_end(stage: str, media: Path, tmp_path: Path) -> None:
    cfg = _config(media, tmp_path / "out", stage, run={"sample_every": 4})
    last = run(write_config(tmp_path / "run.yaml", cfg))
    out = tmp_path / "out"
    assert last == out / "checkpoints" / "step_00000004.pt"
    assert sorted(p.name for p in (out / "checkpoints").iterdir()) == ["step_00000002.pt",
                                                                 "step_00000004.pt"]
    rows = _metrics(out)
    assert [r["step"] for r in rows] == ["1", "2", "3", "4"]
    assert all(float(v) == float(v) for r in rows for k, v in r.items() if v)  # no NaN
    assert (out / "samples" / "step_00000004.mp4").is_file()  # the last phase has 5-frame clips
    payload = load_checkpoint(last)
    assert payload["step"] == 4 and payload["config"]["stage"] == stage


@pytest.mark.parametrize("stage", ["vae", "diffusion"])  # the others: mid-round test below
def test_resumed_run_is_bit_identical(stage: str, media: Path, tmp_path: Path) -> None:
    whole = run(write_config(tmp_path / "a.yaml", _config(media, tmp_path / "a", stage)))
    interrupted = write_config(tmp_path / "b.yaml", _config(media, tmp_path / "b", stage))
    run(interrupted, ["run.steps=2"])  # stops after the checkpoint of step 2
    resumed = run(interrupted)
    a, b = _networks(whole), _networks(resumed)
    assert a.keys() == b.keys()
    for name in a:
        for key in a[name]:
            assert torch.equal(a[name][key], b[name][key]), f"{name}.{key}"
    assert _metrics(tmp_path / "a") == [
        {**row, "time/step_s": a_row["time/step_s"]}
        for row, a_row in zip(_metrics(tmp_path / "b"), _metrics(tmp_path / "a"))
    ]


def test_diffusion_loss_falls(media: Path, tmp_path: Path) -> None:
    cfg = tiny_config(media, tmp_path / "out", run={"steps": 30, "checkpoint_every": 30},
                      data={"batch_size": 4})
    run(write_config(tmp_path / "run.yaml", cfg))
    losses = [float(r["loss"]) for r in _metrics(tmp_path / "out")]
    assert sum(losses[-5:]) / 5 < 0.8 * sum(losses[:5]) / 5


def test_stages_chain_from_checkpoints(media: Path, tmp_path: Path) -> None:
    """diffusion -> distillation (from its EMA) -> APT (G from the student, D from diffusion)."""
    diffusion = tmp_path / "diffusion"
    run(write_config(tmp_path / "d.yaml", tiny_config(media, diffusion, run={"steps": 2})))
    distill = tmp_path / "distill"
    cfg = tiny_config(media, distill, "distill", run={"steps": 2},
                      model={"init": str(diffusion)})
    run(write_config(tmp_path / "p.yaml", cfg))
    start = _networks(diffusion / "checkpoints" / "step_00000002.pt")["dit_ema"]
    teacher = _networks(distill / "checkpoints" / "step_00000002.pt")["teacher"]
    assert all(torch.equal(start[k], teacher[k]) for k in start)  # round 1's teacher
    cfg = tiny_config(media, tmp_path / "apt", "adversarial", run={"steps": 1},
                      model={"init": str(distill)},
                      adversarial={"discriminator_init": str(diffusion)})
    networks = _networks(run(write_config(tmp_path / "a.yaml", cfg)))
    assert set(networks) == {"generator", "generator_ema", "discriminator"}


def test_bf16_checkpointing_and_real_degradations_run(media: Path, tmp_path: Path) -> None:
    degradation = Path(__file__).parents[1] / "configs" / "degradations" / "realesrgan_video.yaml"
    cfg = tiny_config(media, tmp_path / "out", "adversarial", run={"steps": 2, "precision": "bf16"},
                      model={"gradient_checkpointing": True},
                      data={"scale": 4, "degradation": str(degradation)})
    networks = _networks(run(write_config(tmp_path / "run.yaml", cfg)))
    assert all(v.dtype == torch.float32 for v in networks["generator"].values())
    assert all(torch.isfinite(v).all() for v in networks["discriminator"].values())


def test_a_checkpoint_of_another_stage_is_refused(media: Path, tmp_path: Path) -> None:
    run(write_config(tmp_path / "a.yaml", tiny_config(media, tmp_path / "out", run={"steps": 2})))
    from seedvr2.errors import CheckpointError

    with pytest.raises(CheckpointError, match="is a 'diffusion' checkpoint"):
        run(write_config(tmp_path / "b.yaml", tiny_config(media, tmp_path / "out", "distill")))


def test_exported_weights_rebuild_the_model_from_one_file(media: Path, tmp_path: Path) -> None:
    run(write_config(tmp_path / "a.yaml", tiny_config(media, tmp_path / "out", run={"steps": 2})))
    exported = export_weights(tmp_path / "out", tmp_path / "dit.safetensors")
    with safe_open(str(exported), framework="pt") as handle:
        metadata = handle.metadata()
    assert metadata["network"] == "dit_ema" and metadata["step"] == "2"
    model = build_dit(json.loads(metadata["config"]))
    load_into(model, load_file(str(exported)))  # strict
    again_exported = [export_weights(tmp_path / "out", tmp_path / f"dit{n}.safetensors")
                      for n in range(4)]  # fmt: skip
    assert {p.read_bytes() for p in again_exported} == {exported.read_bytes()}  # same bytes
    again = tiny_config(media, tmp_path / "distill", "distill", run={"steps": 1},
                        model={"init": str(exported)})
    run(write_config(tmp_path / "b.yaml", again))  # a weights file starts a run too


def test_export_can_record_the_dits_colour_correction(media: Path, tmp_path: Path) -> None:
    run(write_config(tmp_path / "a.yaml", tiny_config(media, tmp_path / "out", run={"steps": 1})))
    plain = export_weights(tmp_path / "out", tmp_path / "dit.safetensors")
    assert main(["export", str(tmp_path / "out"), str(tmp_path / "none.safetensors"),
                 "--color-correction", "none"]) == 0  # fmt: skip
    configs = {}
    for path in (plain, tmp_path / "none.safetensors"):
        with safe_open(str(path), framework="pt") as handle:
            configs[path.stem] = json.loads(handle.metadata()["config"])
    assert configs["dit"]["color_correction"] == "wavelet"
    assert configs["none"] == {**configs["dit"], "color_correction": "none"}
    assert load_file(str(plain)).keys() == load_file(str(tmp_path / "none.safetensors")).keys()


def test_export_keeps_an_existing_file_unless_overwrite(media: Path, tmp_path: Path, capsys,
                                                        umask_002: int) -> None:
    run(write_config(tmp_path / "a.yaml", tiny_config(media, tmp_path / "out", run={"steps": 1})))
    target = tmp_path / "dit.safetensors"
    target.write_bytes(b"the user's own file")
    assert main(["export", str(tmp_path / "out"), str(target)]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "exists; pass --overwrite to replace it" in err[0]
    assert target.read_bytes() == b"the user's own file"
    with pytest.raises(OutputError, match="does not exist"):
        export_weights(tmp_path / "out", tmp_path / "no" / "dit.safetensors")
    assert main(["export", str(tmp_path / "out"), str(target), "--overwrite"]) == 0
    with safe_open(str(target), framework="pt") as handle:
        assert handle.metadata()["network"] == "dit_ema"
    assert stat.S_IMODE(target.stat().st_mode) == umask_002  # not safetensors' private 0o600
    assert not [p.name for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temporaries


def _assert_equal_nested(a: object, b: object, where: str = "") -> None:
    """Exact equality of nested dicts/lists of tensors and plain values."""
    if isinstance(a, dict):
        assert isinstance(b, dict) and a.keys() == b.keys(), where
        for key in a:
            _assert_equal_nested(a[key], b[key], f"{where}.{key}")
    elif isinstance(a, (list, tuple)):
        assert isinstance(b, (list, tuple)) and len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b)):
            _assert_equal_nested(x, y, f"{where}[{i}]")
    elif isinstance(a, torch.Tensor):
        assert isinstance(b, torch.Tensor) and torch.equal(a, b), where
    else:
        assert a == b, where


def _train_in_a_new_process(config: Path, *overrides: str) -> None:
    """``python -m seedvr2 train`` in a fresh interpreter (nothing cached in this process), with
    this process's thread count (float sums depend on how work is split between threads)."""
    threads = str(torch.get_num_threads())
    result = subprocess.run([sys.executable, "-m", "seedvr2", "train", str(config), *overrides],
                            capture_output=True, text=True, timeout=300,
                            env={**os.environ, "OMP_NUM_THREADS": threads})
    assert result.returncode == 0, result.stderr[-3000:]


@pytest.mark.parametrize("stage", ["distill", "adversarial"])
def test_resume_mid_round_and_mid_phase_in_a_new_process(stage: str, media: Path,
                                                          tmp_path: Path) -> None:
    """Interrupted at step 4: inside distillation round 2 (steps 3-5) and data phase 2 (from
    step 1), away from both boundaries; the resumed run must end where an unbroken one does."""
    schedule = {
        "distill": {"teacher_steps": 8, "round_steps": 3},
        "run": {"steps": 6, "checkpoint_every": 4, "keep_last": 3},
        "data": {"phases": [{"frames": [1], "sizes": [32]},
                            {"start_step": 1, "frames": [1, 5], "sizes": [32],
                             "aspect_ratios": [1.0, 1.5]}]},
    }
    whole = run(write_config(tmp_path / "a.yaml", _config(media, tmp_path / "a", stage,
                                                          **schedule)))
    interrupted = write_config(tmp_path / "b.yaml", _config(media, tmp_path / "b", stage,
                                                            **schedule))
    _train_in_a_new_process(interrupted, "run.steps=4")
    middle = load_checkpoint(tmp_path / "b" / "checkpoints" / "step_00000004.pt")
    if stage == "distill":
        assert middle["stage_state"] == {"round": 1}  # round 2 was under way
    _train_in_a_new_process(interrupted)
    a, b = load_checkpoint(whole), load_checkpoint(tmp_path / "b" / "checkpoints" / whole.name)
    for part in ("step", "models", "optimizers", "stage_state", "model_configs"):
        _assert_equal_nested(a[part], b[part], part)
    assert [{k: v for k, v in r.items() if k != "time/step_s"} for r in _metrics(tmp_path / "a")] \
        == [{k: v for k, v in r.items() if k != "time/step_s"} for r in _metrics(tmp_path / "b")]


def test_a_passthrough_generator_trains_with_frozen_in_and_out_maps(media: Path, tmp_path: Path) -> None:
    from seedvr2.errors import ConfigError
    from seedvr2.models.dit.passthrough import make_passthrough

    dit = {"dim": 128, "heads": 2, "head_dim": 64, "num_layers": 2, "mm_layers": 2,
           "txt_in_dim": 16, "rope_dim": 30, "rope_type": "rope3d", "mlp_type": "gelu",
           "out_norm": False, "last_block_vid_only": False, "patch_size": [1, 1, 1],
           "vid_in_channels": 97, "vid_out_channels": 48}
    cfg = tiny_config(media, tmp_path / "pt", "adversarial", run={"steps": 2},
                      model={"dit": dit, "init": "passthrough", "frozen": ["vid_in", "vid_out"]},
                      adversarial={"discriminator_init": "passthrough", "l1_weight": 0.0,
                                   "mse_weight": 1000.0, "feature_weight": 1.0})
    trained = _networks(run(write_config(tmp_path / "pt.yaml", cfg)))["generator"]
    with open(tmp_path / "pt" / "metrics.csv") as handle:
        rows = list(csv.DictReader(handle))
    assert float(rows[0]["g/mse"]) > 0 and float(rows[0]["g/l1"]) > 0  # both logged
    g = {k: float(rows[0][f"g/{k}"]) for k in ("gan", "mse", "feature", "loss")}
    assert g["loss"] == pytest.approx(g["gan"] + 1000 * g["mse"] + g["feature"], rel=1e-5)
    start = make_passthrough(build_dit(dit)).state_dict()
    for name in ("vid_in.proj.weight", "vid_in.proj.bias", "vid_out.proj.weight"):
        assert torch.equal(trained[name], start[name]), name
    assert not torch.equal(trained["blocks.0.attn.proj_out.vid.weight"],
                           start["blocks.0.attn.proj_out.vid.weight"])
    cfg["run"]["steps"] = 3  # resumes: the last block's text weights never had a gradient
    run(write_config(tmp_path / "pt.yaml", cfg))
    cfg["model"]["frozen"] = ["vid_inn"]
    with pytest.raises(ConfigError, match="'vid_inn' names no parameter"):
        run(write_config(tmp_path / "bad.yaml", cfg))


def test_fidelity_stage_fits_the_targets_and_starts_the_adversarial_stage(media: Path,
                                                                          tmp_path: Path) -> None:
    """L1, MSE, log MSE and relative MSE alone, no discriminator: the loss is their weighted sum
    and the
    squared error falls; the checkpoint is a generator the adversarial stage takes as init."""
    cfg = tiny_config(media, tmp_path / "fid", "fidelity",
                      run={"steps": 30, "checkpoint_every": 30, "ema_decay": None},
                      data={"batch_size": 4, "phases": [{"frames": [1], "sizes": [32]}]},
                      fidelity={"l1_weight": 0.5, "mse_weight": 2.0, "log_mse_weight": 0.1,
                                "relative_mse_weight": 0.3, "excess_mse_weight": 0.2})
    last = run(write_config(tmp_path / "fid.yaml", cfg))
    rows = _metrics(tmp_path / "fid")
    for row in rows:
        expected = (0.5 * float(row["g/l1"]) + 2.0 * float(row["g/mse"])
                    + 0.1 * float(row["g/log_mse"]) + 0.3 * float(row["g/relative_mse"])
                    + 0.2 * float(row["g/excess_mse"]))
        assert float(row["g/loss"]) == pytest.approx(expected, rel=1e-5)
    errors = [float(r["g/mse"]) for r in rows]  # positive (the total is not: log MSE < 0)
    assert sum(errors[-5:]) / 5 < 0.8 * sum(errors[:5]) / 5
    assert set(_networks(last)) == {"generator"}
    cfg = tiny_config(media, tmp_path / "apt", "adversarial", run={"steps": 1},
                      model={"init": str(tmp_path / "fid")})
    networks = _networks(run(write_config(tmp_path / "apt.yaml", cfg)))
    assert set(networks) == {"generator", "generator_ema", "discriminator"}


@pytest.mark.parametrize("stage", ["diffusion", "fidelity", "adversarial"])
def test_training_conditions_are_up_scaled_as_the_trained_dit_says(stage: str, media: Path,
                                                                   tmp_path: Path) -> None:
    """``DiTConfig.condition_resize`` reaches the data: the trained DiT learns on conditions
    made as ``restore`` will make them for it."""
    for resize in ("bicubic", "bicubic_antialias"):
        dit = {**TINY_DIT, "condition_resize": resize}
        cfg = config_from_dict(tiny_config(media, tmp_path / resize, stage, model={"dit": dit}))
        trainer = Trainer(cfg, DistContext(0, 1, torch.device("cpu"), "none"))
        assert trainer.dataset().condition_resize == resize


def test_fidelity_relative_and_excess_mse_divide_by_each_clips_lq_error(
    media: Path, tmp_path: Path, monkeypatch
) -> None:
    """The relative and excess terms' reference is the batch's LQ latent (the pass-through
    output), clip by clip: ``MSE(x̂, x) / (MSE(LQ, x) + floor)``, and the excess of ``MSE(x̂, x)``
    over ``MSE(LQ, x)`` (none on a clip better than its LQ)."""
    from seedvr2.train.stage import LatentBatch

    cfg = config_from_dict(tiny_config(media, tmp_path / "rel", "fidelity",
                                       fidelity={"relative_mse_weight": 1.0,
                                                 "relative_mse_floor": 0.01,
                                                 "excess_mse_weight": 1.0,
                                                 "excess_mse_floor": 0.001}))
    stage = Trainer(cfg, DistContext(0, 1, torch.device("cpu"), "none")).stage
    torch.manual_seed(0)
    shapes = torch.tensor([[1, 4, 4], [1, 2, 4]])
    x0 = torch.randn(24, 16)
    lq = x0 + torch.cat([0.1 * torch.randn(16, 16), torch.randn(8, 16)])  # mild, heavy
    fake = x0 + 0.05 * torch.randn(24, 16)
    monkeypatch.setattr(stage, "one_step", lambda *args: fake)
    batch = LatentBatch(x0, lq, shapes, [], [None, None], [])
    _, metrics = stage.loss(batch)
    clips = list(zip(fake.split([16, 8]), x0.split([16, 8]), lq.split([16, 8]), strict=True))
    expected = sum(float(((f - x) ** 2).mean() / (((r - x) ** 2).mean() + 0.01))
                   for f, x, r in clips)
    assert float(metrics["g/relative_mse"]) == pytest.approx(expected / 2, rel=1e-5)
    fake[16:] = x0[16:] + 0.1 * torch.randn(8, 16)  # the heavy clip: better than its LQ
    fake[:16] = x0[:16] + 0.2 * torch.randn(16, 16)  # the mild clip: worse than its LQ
    _, metrics = stage.loss(batch)
    worse = float(((fake[:16] - x0[:16]) ** 2).mean())
    reference = float(((lq[:16] - x0[:16]) ** 2).mean())
    assert float(metrics["g/excess_mse"]) == pytest.approx(
        (worse - reference) / (reference + 0.001) / 2, rel=1e-4)
