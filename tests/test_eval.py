"""The benchmark: LQ protocol, baselines, tables, and the `seedvr2 eval` command."""

import json
import math
from pathlib import Path

import numpy as np
import pytest

from seedvr2.cli import main
from seedvr2.errors import InputError
from seedvr2.eval import (
    BenchmarkSettings,
    bicubic,
    clip_seed,
    lanczos_unsharp,
    run_benchmark,
    synthesize_lq,
    to_csv,
    to_json,
    to_markdown,
)
from seedvr2.eval.metrics import psnr
from seedvr2.eval.report import side_by_side
from seedvr2.media import MediaWriter, read_frames
from seedvr2.pipeline import Restorer

DEGRADATION = Path(__file__).parents[1] / "configs" / "degradations" / "realesrgan_video.yaml"


def smooth_clip(frames: int = 3, size: int = 96) -> np.ndarray:  # (f, h, w, 3) in [0, 1]
    """A smooth moving pattern: bicubic recovers it well from a down-scaled copy."""
    y, x = np.mgrid[0:size, 0:size] / size
    out = []
    for t in range(frames):
        base = 0.5 + 0.3 * np.sin(2 * np.pi * (x + 0.05 * t)) * np.cos(2 * np.pi * y)
        out.append(np.stack([base, 0.8 * base + 0.1, 1 - base], -1))
    return np.stack(out).astype(np.float32)


def _psnr(a: np.ndarray, b: np.ndarray) -> float:
    import torch

    return psnr(torch.from_numpy(a).permute(0, 3, 1, 2), torch.from_numpy(b).permute(0, 3, 1, 2))


def test_protocol_is_deterministic_per_seed_and_clip() -> None:
    gt = smooth_clip(frames=2, size=32)
    one = synthesize_lq(gt, 4, DEGRADATION, seed=7)
    assert one.shape == (2, 8, 8, 3) and one.dtype == np.float32
    np.testing.assert_array_equal(one, synthesize_lq(gt, 4, DEGRADATION, seed=7))
    assert not np.array_equal(one, synthesize_lq(gt, 4, DEGRADATION, seed=8))
    assert clip_seed(0, "a.mp4") == clip_seed(0, "a.mp4") != clip_seed(0, "b.mp4")
    assert synthesize_lq(gt, 2, DEGRADATION, seed=7).shape == (2, 16, 16, 3)
    plain = synthesize_lq(gt, 2, None, seed=0)
    np.testing.assert_array_equal(plain, np.round(plain * 255) / 255)  # 8-bit levels
    with pytest.raises(InputError, match="divisible"):
        synthesize_lq(gt[:, :30], 4, None, seed=0)


def test_baselines_recover_a_smooth_clip_and_x2_beats_x4() -> None:
    gt = smooth_clip()
    scores = {}
    for scale in (2, 4):
        lq = synthesize_lq(gt, scale, None, seed=0)
        for name, upscale in (("bicubic", bicubic), ("lanczos", lanczos_unsharp)):
            out = upscale(lq, scale)
            assert out.shape == gt.shape and out.min() >= 0 and out.max() <= 1
            scores[name, scale] = _psnr(out, gt)
    assert scores["bicubic", 2] > 35 and scores["bicubic", 4] > 25
    assert scores["bicubic", 2] > scores["bicubic", 4]
    assert scores["lanczos", 2] > scores["lanczos", 4]
    mean_only = np.broadcast_to(gt.mean(axis=(1, 2), keepdims=True), gt.shape).copy()
    assert scores["bicubic", 4] > _psnr(mean_only, gt) + 10


def _write_inputs(folder: Path, size: int = 96) -> Path:
    folder.mkdir()
    clip = smooth_clip(frames=3, size=size)
    with MediaWriter(folder / "clip.mp4", codec="ffv1") as writer:
        for frame in clip:
            writer.write(frame)
    with MediaWriter(folder / "still.png") as writer:
        writer.write(clip[0])
    return folder


def test_table_lists_every_method_and_metric(tmp_path: Path) -> None:
    inputs = _write_inputs(tmp_path / "gt")
    settings = BenchmarkSettings(scale=4, seed=3)
    result = run_benchmark([inputs], {}, settings)
    assert result.clips == ["clip.mp4", "still.png"]
    assert result.methods == ["bicubic", "lanczos_unsharp", "ground_truth"]
    for method in ("bicubic", "lanczos_unsharp"):
        assert result.mean(method, "psnr") > 25 and 0.7 < result.mean(method, "ssim") <= 1
    assert "warping_error" in result.scores["bicubic", "clip.mp4"]
    assert "warping_error" not in result.scores["bicubic", "still.png"]
    assert result.notes["warping_error"].startswith("clips only")
    for name in ("lpips", "dists"):  # weights may be absent: a note instead of a failure
        assert name in result.notes or not math.isnan(result.mean("bicubic", name))
    table = to_markdown(result)
    for word in ["psnr ↑", "ssim ↑", "lpips ↓", "dists ↓", "niqe ↓", "warping_error ↓",
                 "| bicubic |", "| lanczos_unsharp |", "| ground_truth |", "seed 3"]:
        assert word in table
    rows = to_csv(result).splitlines()
    assert rows[0] == "method,clip,metric,value"
    assert len(rows) == 1 + 3 * 6 * 3  # methods x metrics x (2 clips + mean)
    data = json.loads(json.dumps(to_json(result)))
    assert data["mean"]["bicubic"]["psnr"] == pytest.approx(result.mean("bicubic", "psnr"))
    assert data["mean"]["ground_truth"]["psnr"] is None


def test_no_reference_mode_and_model_in_the_table(tmp_path: Path, tiny_model: Path) -> None:
    inputs = _write_inputs(tmp_path / "lq", size=48)  # x2: 96 px outputs, NIQE's minimum
    settings = BenchmarkSettings(scale=2, reference=False, baselines=("bicubic",))
    restorer = Restorer.from_pretrained(tiny_model, device="cpu", scale=2, batch_size=5)
    seen = {}
    result = run_benchmark([inputs / "clip.mp4"], {"tiny": restorer}, settings,
                           on_output=lambda clip, out: seen.update({clip: out}))
    assert result.methods == ["bicubic", "tiny"] and result.metrics == ["niqe", "warping_error"]
    assert set(result.scores["tiny", "clip.mp4"]) == {"niqe", "warping_error"}
    assert seen["clip.mp4"]["tiny"].shape == (3, 96, 96, 3)
    strip = side_by_side(seen["clip.mp4"])  # input | bicubic | tiny, 96 px crops
    assert strip.shape == (96, 3 * 96 + 2 * 2, 3)
    with pytest.raises(InputError, match="needs ground truth"):
        BenchmarkSettings(reference=False, metrics=("psnr",))


def test_eval_command_writes_the_tables(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    inputs = _write_inputs(tmp_path / "gt")
    out = tmp_path / "out"
    code = main(["eval", str(inputs / "still.png"), "-o", str(out), "--no-model", "--scale", "2",
                 "--metrics", "psnr,ssim", "--degradation", str(DEGRADATION)])
    assert code == 0
    printed = capsys.readouterr().out
    assert "| bicubic |" in printed and "| lanczos_unsharp |" in printed
    assert {p.name for p in out.iterdir()} >= {"results.md", "results.csv", "results.json",
                                                 "crops"}
    crop = read_frames(out / "crops" / "still.png")
    assert crop.shape[1:3] == (96, 96 * 4 + 2 * 3)  # input, 2 baselines, GT
    assert main(["eval", str(tmp_path / "missing"), "-o", str(out), "--no-model"]) == 1


def test_eval_scores_each_model_at_each_strength(tmp_path: Path, tiny_model: Path, capsys) -> None:
    inputs = _write_inputs(tmp_path / "gt")
    args = ["eval", str(inputs / "still.png"), "-o", str(tmp_path / "out"), "--model",
            str(tiny_model), "--scale", "2", "--metrics", "psnr"]
    assert main([*args, "--strength", "0", "--strength", "1", "--strength", "0"]) == 0
    rows = [line.split("|")[1].strip() for line in capsys.readouterr().out.splitlines()
            if line.startswith("| ") and "psnr" not in line]
    assert rows == ["bicubic", "lanczos_unsharp", "tiny", "tiny @ strength 0", "ground_truth"]
    result = json.loads((tmp_path / "out" / "results.json").read_text())["mean"]
    assert result["tiny @ strength 0"]["psnr"] != result["tiny"]["psnr"]
    with pytest.raises(SystemExit):
        main([*args, "--strength", "2.5"])
    assert "--strength: must be at most 2.0, got 2.5" in capsys.readouterr().err


def test_eval_keeps_earlier_results_unless_told_to_overwrite(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    inputs = _write_inputs(tmp_path / "gt")
    out = tmp_path / "out"
    args = ["eval", str(inputs / "still.png"), "-o", str(out), "--no-model", "--scale", "2",
            "--metrics", "psnr"]
    assert main(args) == 0
    (out / "notes.txt").write_text("mine")
    before = {p: p.read_bytes() for p in out.rglob("*") if p.is_file()}
    assert main([*args, "--seed", "1", "--degradation", str(DEGRADATION)]) == 1
    assert "already holds results" in capsys.readouterr().err
    assert {p: p.read_bytes() for p in out.rglob("*") if p.is_file()} == before
    assert main([*args, "--degradation", str(DEGRADATION), "--overwrite"]) == 0
    assert (out / "results.json").read_bytes() != before[out / "results.json"]
    assert (out / "notes.txt").read_text() == "mine"
    assert sorted(p.name for p in out.iterdir()) == ["crops", "notes.txt", "results.csv",
                                                     "results.json", "results.md"]
