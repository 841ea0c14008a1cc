"""Unit tests of DiT pieces the goldens do not isolate."""

from __future__ import annotations

import itertools

import pytest
import torch
import torch.nn.functional as F

from seedvr2.errors import ConfigError, InputError
from seedvr2.models.dit import DiTConfig, build_dit
from seedvr2.models.dit.attention import build_window_plan
from seedvr2.models.dit.layers import patchify, row_chunks, split_time_embedding, unpatchify
from seedvr2.models.dit.windows import window_partition

GRIDS = [(1, 1, 1), (1, 17, 23), (3, 34, 60), (5, 45, 80), (9, 7, 130), (31, 12, 9), (40, 90, 3)]


@pytest.mark.parametrize("grid", GRIDS)
@pytest.mark.parametrize("shifted", [False, True])
@pytest.mark.parametrize("num_windows", [(4, 3, 3), (1, 1, 1), (2, 5, 4)])
def test_windows_cover_every_token_once(grid, shifted, num_windows) -> None:
    hits = torch.zeros(grid, dtype=torch.int32)
    for (t0, t1), (h0, h1), (w0, w1) in window_partition(grid, num_windows, shifted):
        assert t0 < t1 and h0 < h1 and w0 < w1
        hits[t0:t1, h0:h1, w0:w1] += 1
    assert bool((hits == 1).all())


def test_window_plan_indexes_each_video_row_once_and_counts_text() -> None:
    grids, texts = [(2, 6, 10), (1, 4, 4)], [3, 5]
    plan = build_window_plan(grids, texts, (4, 3, 3), shifted=True, device=torch.device("cpu"))
    rows = torch.cat([g.vid_index.reshape(-1) for g in plan.groups])
    assert sorted(rows.tolist()) == list(range(2 * 6 * 10 + 16))
    windows = [len(window_partition(g, (4, 3, 3), True)) for g in grids]
    assert plan.windows_per_txt_row[:, 0].tolist() == [windows[0]] * 3 + [windows[1]] * 5


def test_patchify_round_trip_and_channel_order() -> None:
    shapes = torch.tensor([[2, 4, 6], [1, 2, 8]])
    vid = torch.randn(int(shapes.prod(-1).sum()), 5)
    tokens = patchify(vid, shapes, (1, 2, 2))
    assert tokens.shape == (vid.shape[0] // 4, 20)
    assert torch.equal(unpatchify(tokens, shapes, (1, 2, 2)), vid)
    # token (0, 0, 0) of clip 0 holds latent pixels (0,0),(0,1),(1,0),(1,1): (dy, dx, c) order
    grid = vid[:48].view(2, 4, 6, 5)
    expected = torch.cat([grid[0, 0, 0], grid[0, 0, 1], grid[0, 1, 0], grid[0, 1, 1]])
    assert torch.equal(tokens[0], expected)


def test_time_embedding_layout_is_interleaved() -> None:
    emb = torch.arange(2 * 6 * 4, dtype=torch.float32).view(2, 24)
    attn, mlp = split_time_embedding(emb)
    for i, value in enumerate([*attn, *mlp]):
        assert torch.equal(value, emb[:, i::6])


def _inputs(config: DiTConfig, shapes: list[tuple[int, int, int]], texts: list[int], seed=0):
    g = torch.Generator().manual_seed(seed)
    rows = sum(t * h * w for t, h, w in shapes)
    return dict(
        vid=torch.randn(rows, config.vid_in_channels, generator=g),
        txt=torch.randn(sum(texts), config.txt_in_dim, generator=g),
        vid_shape=torch.tensor(shapes),
        txt_shape=torch.tensor(texts)[:, None],
        timestep=torch.rand(len(shapes), generator=g) * 1000,
    )


def _randomized(preset: str) -> torch.nn.Module:
    model = build_dit(preset)
    torch.manual_seed(0)
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(0, 0.05)
    return model.eval()


@pytest.mark.parametrize("preset", ["3b-tiny", "7b-tiny"])
@torch.no_grad()
def test_batched_window_attention_matches_per_window_loop(preset: str) -> None:
    model = _randomized(preset)
    args = _inputs(model.config, [(3, 14, 22), (1, 8, 8)], [5, 2])
    model.attention_backend = "sdpa"
    fast = model(**args)
    model.attention_backend = "loop"
    slow = model(**args)
    assert torch.allclose(fast, slow, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("preset", ["3b-tiny", "7b-tiny"])
@torch.no_grad()
def test_packed_clips_equal_separate_calls(preset: str) -> None:
    """Each clip of a packed batch attends with its own text (the official 3B bug is fixed)."""
    model = _randomized(preset)
    shapes, texts = [(3, 14, 22), (2, 10, 6)], [4, 6]
    both = _inputs(model.config, shapes, texts)
    out = model(**both)
    vid_rows = [t * h * w for t, h, w in shapes]
    for i, (vid, txt) in enumerate(zip(both["vid"].split(vid_rows), both["txt"].split(texts))):
        alone = model(
            vid=vid, txt=txt, vid_shape=both["vid_shape"][i : i + 1],
            txt_shape=both["txt_shape"][i : i + 1], timestep=both["timestep"][i : i + 1],
        )
        assert torch.allclose(out.split(vid_rows)[i], alone, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("preset", ["3b-tiny", "7b-tiny"])
def test_row_ranges_of_cpu_inference_give_the_outputs_of_one_pass(preset: str) -> None:
    """fp32 CPU inference runs the row-wise sub-layers in ranges of rows (4096 at width 128);
    with autograd on they run in one. Two packed clips at two timesteps (per-token modulation),
    4608 patched rows: a range boundary inside the second clip."""
    model = _randomized(preset)
    args = _inputs(model.config, [(2, 64, 72), (1, 96, 96)], [3, 5])
    with torch.no_grad():
        assert len(row_chunks(torch.empty(4608, model.config.dim))) == 2
        ranged = model(**args)
    assert len(row_chunks(torch.empty(4608, model.config.dim))) == 1
    whole = model(**args).detach()
    assert torch.allclose(ranged, whole, rtol=1e-5, atol=1e-5)


def test_gradient_checkpointing_keeps_outputs_and_gradients() -> None:
    model = _randomized("3b-tiny").train()
    args = _inputs(model.config, [(2, 6, 8)], [3])
    grads = []
    for flag in (False, True):
        model.zero_grad()
        model.gradient_checkpointing = flag
        out = model(**args)
        out.square().mean().backward()
        grads.append((out.detach(), [p.grad.clone() for p in model.parameters()]))
    assert torch.allclose(grads[0][0], grads[1][0])
    for a, b in itertools.zip_longest(grads[0][1], grads[1][1]):
        assert torch.allclose(a, b, rtol=1e-5, atol=1e-7)


def test_bad_inputs_raise_input_error() -> None:
    model = build_dit("3b-tiny")
    good = _inputs(model.config, [(1, 4, 4)], [2])
    cases = {
        "vid": good["vid"][:, :30],
        "vid_shape": torch.tensor([[1, 4, 5]]),
        "txt_shape": torch.tensor([[3]]),
        "timestep": torch.zeros(3),
    }
    for key, value in cases.items():
        with pytest.raises(InputError):
            model(**{**good, key: value})


def test_official_config_round_trip_and_errors() -> None:
    config = build_dit("7b-tiny").config
    assert DiTConfig.from_dict(config.to_dict()) == config
    with pytest.raises(ConfigError, match="unknown DiT config keys"):
        DiTConfig.from_dict({"width": 3})
    with pytest.raises(ConfigError, match="mlp_type"):
        DiTConfig.from_official({
            "vid_dim": 256, "txt_dim": 256, "heads": 2, "head_dim": 128, "num_layers": 2,
            "txt_in_dim": 64, "mlp_type": "moe",
        })
    with pytest.raises(ConfigError, match="unknown DiT preset"):
        build_dit("13b")


def test_the_fast_cpu_rms_norm_equals_torchs() -> None:
    from seedvr2.models.dit.layers import RMSNorm, rms_norm

    torch.manual_seed(0)
    x = torch.randn(300, 3, 2, 64)[:, 0] * 5  # a strided view, as q and k are
    norm = RMSNorm(64, eps=1e-5)
    with torch.no_grad():
        norm.weight.uniform_(0.5, 1.5)
        fast, plain = norm(x), F.rms_norm(x, (64,), norm.weight, 1e-5)
        assert (fast - plain).abs().max() < 1e-5
        assert (rms_norm(x, 1e-6) - F.rms_norm(x, (64,), eps=1e-6)).abs().max() < 1e-5
    assert torch.equal(norm(x), F.rms_norm(x, (64,), norm.weight, 1e-5))  # autograd: torch's
