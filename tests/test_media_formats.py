"""Outputs keep the source's pixel layout, say once what they cannot keep, and are reproducible."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest

from media_fixtures import pattern, write_image, write_video
from seedvr2.media import MediaWriter, open_media, read_frames


def _frames(count: int, height: int, width: int, channels: int = 3) -> np.ndarray:
    return np.random.default_rng(0).random((count, height, width, channels), np.float32)


def _rewrite(source: Path, out: Path, **options: object) -> Path:
    """Write ``source``'s frames to ``out`` as the pipeline does (float RGB(A), source layout)."""
    media = open_media(source)
    with MediaWriter.for_source(out, media.info, **options) as writer:
        for frame in media.frames():
            writer.write(frame.image, frame.pts)
    return out


def _stored(path: Path) -> tuple[str, str, int, int, int]:  # (decoder, pix_fmt, w, h, frames)
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        frames = list(container.decode(stream))
    return (
        stream.codec_context.name,
        frames[0].format.name,
        frames[0].width,
        frames[0].height,
        len(frames),
    )


def _bytes(path: Path) -> bytes:
    files = sorted(path.iterdir()) if path.is_dir() else [path]
    return b"".join(file.read_bytes() for file in files)


OUTPUTS = [
    ("h264", ".mp4"), ("h264", ".mkv"), ("h265", ".mkv"), ("h265", ".mov"), ("ffv1", ".mkv"),
    ("prores", ".mov"), ("vp9", ".webm"), ("gif", ".gif"), (None, ""), (None, ".png"),
    (None, ".tif"), (None, ".jpg"), (None, ".webp"), (None, ".bmp"),
]  # fmt: skip


@pytest.mark.parametrize(("codec", "suffix"), OUTPUTS)
def test_the_same_frames_and_settings_give_the_same_bytes(tmp_path, codec, suffix):
    frames = _frames(1 if suffix in (".png", ".tif", ".jpg", ".webp", ".bmp") else 3, 24, 32)
    options = {} if codec is None else {"codec": codec}
    written = []
    for name in ("first", "second"):
        with MediaWriter(tmp_path / f"{name}{suffix}", **options) as writer:
            for frame in frames:
                writer.write(frame)
        written.append(_bytes(tmp_path / f"{name}{suffix}"))
    assert written[0] == written[1]


WRITE_H264 = """
import sys
import numpy as np
from seedvr2.media import MediaWriter
frames = np.random.default_rng(0).random((4, 144, 256, 3), np.float32)
with MediaWriter(sys.argv[1]) as writer:
    for frame in frames:
        writer.write(frame)
"""


@pytest.mark.skipif(len(os.sched_getaffinity(0)) < 2, reason="needs two CPUs to compare with one")
def test_h264_bytes_do_not_depend_on_the_cpu_count(tmp_path):
    outputs = []
    for cpus, name in ((1, "one.mp4"), (2, "two.mp4")):
        pin = f"import os; os.sched_setaffinity(0, sorted(os.sched_getaffinity(0))[:{cpus}])\n"
        command = [sys.executable, "-c", pin + WRITE_H264, str(tmp_path / name)]
        subprocess.run(command, check=True, timeout=120, env=os.environ)
        outputs.append((tmp_path / name).read_bytes())
    assert outputs[0] == outputs[1]


def test_a_16_bit_grey_png_stays_16_bit_grey(tmp_path):
    codes = (np.arange(12 * 20).reshape(12, 20) * 271 % 65536).astype(np.uint16)
    source = write_image(tmp_path / "grey.png", codes, "gray16le")
    for suffix, stored in ((".png", "gray16be"), (".tif", "gray16le")):
        out = _rewrite(source, tmp_path / f"out{suffix}", bit_depth=16)
        assert _stored(out)[1] == stored
        info = open_media(out).info
        assert (info.gray, info.bit_depth) == (True, 16)
        np.testing.assert_array_equal(read_frames(out)[0, ..., 0] * 65535, codes)


@pytest.mark.parametrize(
    ("source_fmt", "codec", "suffix", "stored"),
    [
        ("yuv422p10le", "h265", ".mkv", "yuv422p10le"),
        ("yuv422p10le", "h264", ".mp4", "yuv422p10le"),
        ("yuv422p10le", "ffv1", ".mkv", "yuv444p10le"),  # its default holds more
        ("yuv422p10le", "prores", ".mov", "yuv422p10le"),
        ("yuv444p", "h264", ".mp4", "yuv444p"),
        ("yuv444p", "h265", ".mkv", "yuv444p"),
        ("yuv444p", "prores", ".mov", "yuv444p12le"),  # 4444: FFmpeg decodes it at 12 bits
        ("yuv444p", "vp9", ".webm", "yuv444p"),
        ("gray", "h265", ".mkv", "gray"),
        ("gray", "h264", ".mp4", "yuv420p"),  # few players play 4:0:0 H.264
        ("gray10le", "ffv1", ".mkv", "gray10le"),
    ],
)
def test_chroma_subsampling_depth_and_grey_are_kept(
    tmp_path, caplog, source_fmt, codec, suffix, stored
):
    source = write_video(tmp_path / "in.mkv", pattern(3, 16, 24), codec="ffv1", pix_fmt=source_fmt)
    with caplog.at_level(logging.WARNING):
        out = _rewrite(source, tmp_path / f"out{suffix}", codec=codec)
    assert _stored(out)[1:] == (stored, 24, 16, 3)
    assert caplog.records == []


def test_what_a_codec_cannot_hold_is_said_once(tmp_path, caplog):
    source = write_video(
        tmp_path / "in.mkv", pattern(3, 16, 24), codec="ffv1", pix_fmt="yuv422p10le"
    )
    with caplog.at_level(logging.WARNING):
        out = _rewrite(source, tmp_path / "out.webm", codec="vp9")  # this libvpx is 8-bit only
    assert _stored(out)[1] == "yuv422p"
    assert [record.getMessage() for record in caplog.records] == [
        f"{tmp_path / 'out.webm'}: 10-bit frames are written as 8-bit (vp9 yuv422p)"
    ]


def test_an_odd_size_becomes_an_even_playable_420_h264_and_says_so_once(tmp_path, caplog):
    source = write_video(tmp_path / "odd.mkv", pattern(3, 67, 101), codec="ffv1", pix_fmt="yuv420p")
    with caplog.at_level(logging.WARNING):
        out = _rewrite(source, tmp_path / "odd.mp4")
    assert _stored(out) == ("h264", "yuv420p", 102, 68, 3)
    assert len(caplog.records) == 1
    assert "101x67 is padded to 102x68" in caplog.records[0].getMessage()


def _cmyk_jpeg(path: Path) -> Path:
    image = pytest.importorskip("PIL.Image")
    image.fromarray(pattern(1, 20, 30)[0]).convert("CMYK").save(path)
    return path


def _gif(path: Path) -> Path:
    with MediaWriter(path, codec="gif") as writer:
        for frame in _frames(3, 20, 30):
            writer.write(frame)
    return path


@pytest.mark.parametrize(
    ("make", "suffix", "warned"),
    [
        (_cmyk_jpeg, ".jpg", False),
        (_gif, ".mp4", False),
        (lambda path: write_image(path, np.zeros((8, 8, 4), np.uint8), "rgba"), ".jpg", True),
    ],
)
def test_alpha_is_only_said_dropped_when_the_input_has_some(tmp_path, caplog, make, suffix, warned):
    source = make(tmp_path / {_cmyk_jpeg: "in.jpg", _gif: "in.gif"}.get(make, "in.png"))
    with caplog.at_level(logging.WARNING):
        _rewrite(source, tmp_path / f"out{suffix}")
    assert any("alpha" in record.getMessage() for record in caplog.records) == warned


@pytest.mark.parametrize(
    ("codec", "suffix", "decoder"), [("vp9", ".webm", "vp9"), ("gif", ".gif", "gif")]
)
def test_webm_and_gif_outputs_decode_with_their_frames_and_size(tmp_path, codec, suffix, decoder):
    frames = _frames(4, 20, 30)
    with MediaWriter(tmp_path / f"out{suffix}", codec=codec, fps=10) as writer:
        for frame in frames:
            writer.write(frame)
    assert _stored(tmp_path / f"out{suffix}")[0:1] + _stored(tmp_path / f"out{suffix}")[2:] == (
        decoder, 30, 20, 4,
    )  # fmt: skip
    info = open_media(tmp_path / f"out{suffix}").info
    assert (info.width, info.height, info.frame_count, info.fps) == (30, 20, 4, 10)


def test_gif_keeps_alpha_as_on_or_off(tmp_path):
    rgba = _frames(2, 20, 30, 4)
    rgba[..., 3] = np.where(np.arange(30) < 15, 0.0, 1.0)  # left half transparent
    with MediaWriter(tmp_path / "sprite.gif", codec="gif") as writer:
        for frame in rgba:
            writer.write(frame)
    alpha = read_frames(tmp_path / "sprite.gif")[..., 3]
    np.testing.assert_array_equal(alpha, rgba[..., 3])


@pytest.mark.parametrize("count", [1, 2, 5])
@pytest.mark.parametrize("suffix", [".mkv", ".mp4"])
def test_h265_decode_times_of_short_clips_are_sane(tmp_path, monkeypatch, count, suffix):
    """libx265 offsets the decode times of clips under 3 frames by some ±1e18 ticks (a different
    offset each run); muxers then fail at random ("Invalid argument" when the file is finished)."""
    muxed: list[tuple[int, int, float]] = []
    mux = av.container.OutputContainer.mux

    def record(container, packet):
        muxed.append((packet.pts, packet.dts, float(packet.time_base)))
        return mux(container, packet)

    monkeypatch.setattr(av.container.OutputContainer, "mux", record)
    out = tmp_path / f"short{suffix}"
    for _ in range(10):  # the offset's sign varies from run to run
        muxed.clear()
        with MediaWriter(out, codec="h265", fps=25, time_base=Fraction(1, 1000),
                         overwrite=True) as writer:  # fmt: skip
            for index, frame in enumerate(_frames(count, 64, 64)):
                writer.write(frame, 40 * index)
        lags = [(pts - dts) * base for pts, dts, base in muxed if dts is not None]
        assert len(muxed) == count and all(0 <= lag <= 16 / 25 for lag in lags), lags
        assert open_media(out).info.frame_count in (count, None)
