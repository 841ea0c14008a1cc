"""Sequence parallel DiT: windows dealt to ranks, rows exchanged, output equal to one process."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from rank_support import run_ranks
from seedvr2.models.dit import build_dit
from seedvr2.models.dit.attention import build_window_plan
from seedvr2.models.dit.sequence_parallel import Exchange, SequenceParallel, shard_plan
from seedvr2.models.vae import TileSpec, build_vae
from seedvr2.models.vae.sequence_parallel import TimeSplit, deal_chunks

# Two clips of several windows each, and a one-window image (a rank may get none of its rows).
SHAPES = [(5, 12, 20), (3, 10, 6), (1, 4, 4)]
TEXTS = [7, 5, 3]


def _model(preset: str) -> torch.nn.Module:
    model = build_dit(preset)
    torch.manual_seed(0)
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(0, 0.1)  # large enough that the text stream matters
    return model.eval()


def _inputs(config, shapes, texts) -> dict:
    g = torch.Generator().manual_seed(1)
    return dict(
        vid=torch.randn(sum(t * h * w for t, h, w in shapes), config.vid_in_channels, generator=g),
        txt=torch.randn(sum(texts), config.txt_in_dim, generator=g),
        vid_shape=torch.tensor(shapes),
        txt_shape=torch.tensor(texts)[:, None],
        timestep=torch.rand(len(shapes), generator=g) * 1000,
    )


def _plans(ranks: int) -> tuple[list, torch.Tensor]:
    grids = [(t, h // 2, w // 2) for t, h, w in SHAPES]
    lengths = torch.tensor([t * h * w for t, h, w in grids])
    plans = [build_window_plan(grids, TEXTS, (4, 3, 3), s, torch.device("cpu")) for s in (0, 1)]
    return [shard_plan(plan, lengths, ranks) for plan in plans], lengths


@pytest.mark.parametrize("ranks", [1, 2, 3])
def test_shards_hold_every_row_once_with_its_windows(ranks: int) -> None:
    shards, lengths = _plans(ranks)
    for partition in shards:
        rows = torch.cat([s.rows for s in partition])
        assert sorted(rows.tolist()) == list(range(int(lengths.sum())))
        assert torch.equal(sum(s.lengths for s in partition), lengths)
        for shard in partition:
            local = torch.cat([g.vid_index.reshape(-1) for g in shard.plan.groups])
            assert sorted(local.tolist()) == list(range(len(shard.rows)))  # positions, each once
    # the regular and the shifted partition share most rows on each rank: exchanges are small
    moved = sum(len(set(a.rows.tolist()) - set(b.rows.tolist())) for a, b in zip(*shards))
    assert moved < 0.5 * int(lengths.sum())


@pytest.mark.parametrize("ranks", [2, 3])
def test_exchange_moves_each_row_to_its_new_place(ranks: int) -> None:
    total = 50
    g = torch.Generator().manual_seed(ranks)
    old, new = ([torch.nonzero(deal == r)[:, 0] for r in range(ranks)]
                for deal in torch.randint(0, ranks, (2, total), generator=g))  # interleaved rows
    values = torch.arange(total, dtype=torch.float32)[:, None] * 10  # row r holds 10 r
    exchanges = [Exchange.between(old, new, r) for r in range(ranks)]
    sent = [  # what rank r sends to rank q, as all_to_all_single cuts it
        values[old[r]][e.send_order].split(e.send_counts) for r, e in enumerate(exchanges)
    ]
    for q, (rows, e) in enumerate(zip(new, exchanges)):
        assert [len(sent[r][q]) for r in range(ranks)] == e.recv_counts
        assert torch.equal(e.place(torch.cat([sent[r][q] for r in range(ranks)])), values[rows])


def _sequence_parallel_forward(rank: int, preset: str, out: Path) -> None:
    model = _model(preset)
    model.sequence_parallel = SequenceParallel()
    with torch.no_grad():
        result = model(**_inputs(model.config, SHAPES, TEXTS))
    torch.save(result, out / f"rank{rank}.pt")


@pytest.mark.parametrize("preset", ["3b-tiny", "7b-tiny"])
def test_two_ranks_equal_one_process(preset: str, tmp_path: Path) -> None:
    model = _model(preset)
    with torch.no_grad():
        expected = model(**_inputs(model.config, SHAPES, TEXTS))
    run_ranks(_sequence_parallel_forward, 2, preset, tmp_path)
    for rank in range(2):
        got = torch.load(tmp_path / f"rank{rank}.pt")
        error = float((got - expected).abs().max() / expected.abs().max())
        assert error < 1e-5, error


def _vae_outputs(vae, video: torch.Tensor) -> dict[str, torch.Tensor]:
    """Encode and decode with chunks (4 and 3 of them) and with tiles."""
    tile = TileSpec(24, 8)
    latent = vae.encode(video, temporal_chunk=4).mean  # 4 chunks: 2 per rank
    return {
        "encode": latent,
        "encode_tiled": vae.encode(video[:, :, :13], temporal_chunk=4, tile=tile).mean,  # 3 chunks
        "decode": vae.decode(latent, temporal_chunk=4),
        "decode_tiled": vae.decode(latent, temporal_chunk=8, tile=tile),  # 2 chunks
        "decode_one_chunk": vae.decode(latent, temporal_chunk=0),
    }


def _vae_and_video():
    torch.manual_seed(0)
    vae = build_vae("tiny").eval()
    video = torch.rand(1, 3, 17, 32, 32, generator=torch.Generator().manual_seed(2)) * 2 - 1
    return vae, video


def _time_split_vae(rank: int, out: Path) -> None:
    vae, video = _vae_and_video()
    vae.time_split = TimeSplit()
    with torch.no_grad():
        torch.save(_vae_outputs(vae, video), out / f"vae{rank}.pt")


def test_vae_chunks_on_two_ranks_equal_one_process(tmp_path: Path) -> None:
    vae, video = _vae_and_video()
    with torch.no_grad():
        expected = _vae_outputs(vae, video)
    run_ranks(_time_split_vae, 2, tmp_path)
    for rank in range(2):
        got = torch.load(tmp_path / f"vae{rank}.pt")
        for name, value in expected.items():
            assert got[name].shape == value.shape, name
            assert torch.allclose(got[name], value, rtol=1e-5, atol=1e-5), name


def test_chunks_are_dealt_in_contiguous_runs() -> None:
    assert deal_chunks(5, 2) == [range(0, 3), range(3, 5)]
    assert deal_chunks(4, 3) == [range(0, 2), range(2, 3), range(3, 4)]
