"""Open a video, an image or a folder of images and stream its frames as float RGB(A) arrays.

Everything is decoded with PyAV. Opening probes the input (first frame, frame count by a demux
pass where the container has no index); :meth:`MediaSource.frames` decodes lazily, one frame at a
time, so memory does not grow with the length of the video.
"""

from __future__ import annotations

import logging
import math
import re
from collections.abc import Iterator
from dataclasses import replace
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
from av.stream import Disposition

from seedvr2.errors import InputError

from .convert import bit_depth, chroma_of, color_info, frame_to_array, is_gray, with_channels
from .local import open_input
from .types import IMAGE_EXTENSIONS, VIDEO_EXTENSIONS, Frame, MediaInfo

logger = logging.getLogger(__name__)

DEFAULT_SEQUENCE_FPS = Fraction(25)
"""Frame rate given to image sequences (FFmpeg's image2 default) unless ``fps`` is passed."""

OPAQUE_ALPHA_DECODERS = frozenset({"gif", "mjpeg"})
"""Decoders whose output has an alpha plane whatever the file holds (GIF's canvas; CMYK JPEG,
converted to RGB with an opaque alpha): their frames count as having alpha only when a pixel of
the first frame is not opaque, as palette frames do."""


def _natural_key(path: Path) -> list[int | str]:
    return [int(part) if part.isdigit() else part.lower() for part in re.split(r"(\d+)", path.name)]


def image_files(folder: str | Path) -> list[Path]:
    """Image files directly inside ``folder`` (hidden ones skipped), in natural order (2 < 10)."""
    files = (
        entry
        for entry in Path(folder).iterdir()
        if entry.suffix.lower() in IMAGE_EXTENSIONS and not entry.name.startswith(".")
    )
    return sorted((entry for entry in files if entry.is_file()), key=_natural_key)


def _reason(error: Exception) -> str:
    return getattr(error, "strerror", None) or str(error) or type(error).__name__


def _open_container(path: Path) -> av.container.InputContainer:
    try:
        return open_input(path)
    except av.error.EOFError:
        raise InputError(f"{path}: has no video frames (file ends after its header)") from None
    except av.error.ArgumentError:  # also what a demuxer refused by the whitelist gives
        raise InputError(
            f"{path}: cannot be read as video or image (damaged, or a playlist or list of other "
            "files, which are not followed: give the media files themselves)"
        ) from None
    except (av.FFmpegError, OSError, ValueError) as error:
        raise InputError(f"{path}: cannot be read as video or image ({_reason(error)})") from None


def _video_stream(container: av.container.InputContainer, path: Path) -> av.video.VideoStream:
    streams = [s for s in container.streams.video if not s.disposition & Disposition.attached_pic]
    if not streams:
        raise InputError(f"{path}: has no video frames (no video stream)")
    return streams[0]


def _first_frame(container: av.container.InputContainer, path: Path) -> av.VideoFrame:
    try:
        frame = next(container.decode(_video_stream(container, path)), None)
    except av.FFmpegError as error:
        raise InputError(f"{path}: cannot decode the first frame ({_reason(error)})") from None
    if frame is None:
        raise InputError(f"{path}: has no video frames (none decodes)")
    return frame


def _read_image(path: Path) -> tuple[av.VideoFrame, str]:  # (frame, decoder name)
    with _open_container(path) as container:
        return _first_frame(container, path), _video_stream(container, path).codec_context.name


def _default_matrix(kind: str, frame: av.VideoFrame) -> str:
    """Matrix for untagged Y'CbCr: BT.601 for images (JPEG, WebP) and SD video, else BT.709."""
    hd = frame.width >= 1280 or frame.height > 576
    return "bt709" if kind == "video" and hd else "smpte170m"


def _display_rotation(frame: av.VideoFrame) -> int:
    return round(frame.rotation / 90) % 4 * 90


def _rotate(image: np.ndarray, rotation: int) -> np.ndarray:
    return np.ascontiguousarray(np.rot90(image, rotation // 90)) if rotation else image


def _probe(frame: av.VideoFrame, kind: str, decoder: str) -> dict[str, object]:
    """Size, pixel layout, alpha, rotation and colour fields of MediaInfo from one decoded frame."""
    rotation = _display_rotation(frame)
    width, height = (frame.height, frame.width) if rotation % 180 else (frame.width, frame.height)
    image = frame_to_array(frame, _default_matrix(kind, frame))
    fmt = frame.format
    # A palette (pal8) may or may not hold transparent entries: look at the pixels.
    by_pixels = fmt.has_palette or decoder in OPAQUE_ALPHA_DECODERS
    has_alpha = image.shape[-1] == 4 and (not by_pixels or image[..., 3].min() < 1)
    return {
        "width": width,
        "height": height,
        "bit_depth": bit_depth(fmt) if not fmt.has_palette else 8,
        "has_alpha": bool(has_alpha),
        "rotation": rotation,
        "color": color_info(frame),
        "chroma": chroma_of(fmt),
        "gray": is_gray(fmt),
    }


def _check_trim(start: float, duration: float | None, max_frames: int | None) -> None:
    if start < 0:
        raise InputError(f"start time must be >= 0 seconds, got {start}")
    if duration is not None and duration <= 0:
        raise InputError(f"duration must be > 0 seconds, got {duration}")
    if max_frames is not None and max_frames < 1:
        raise InputError(f"frame count must be >= 1, got {max_frames}")


class MediaSource:
    """An opened input; :attr:`info` describes it, :meth:`frames` decodes it.

    Build with :func:`open_media`. Each :meth:`frames` call opens the file anew, so a source can
    be iterated several times and holds no file handle in between.
    """

    def __init__(self, info: MediaInfo, files: list[Path], selection_pts: list[int] | None):
        self.info = info
        self._files = files  # image files; empty for video
        self._selection_pts = selection_pts  # sorted pts of the selected video frames, if known

    def __repr__(self) -> str:
        return f"MediaSource({self.info!r})"

    def frames(self, start: int = 0, count: int | None = None) -> Iterator[Frame]:
        """Yield the selected frames one at a time, from index ``start``, at most ``count``.

        Frames are :class:`Frame` objects (not batches); images are float32 (h, w, 3|4) in
        [0, 1], already rotated for display. Frame ``index`` counts within the selection.
        """
        if start < 0 or (count is not None and count < 0):
            raise ValueError(f"start {start} and count {count} must be >= 0")
        if self.info.kind == "video":
            yield from self._video_frames(start, count)
        else:
            yield from self._image_frames(start, count)

    def _image_frames(self, start: int, count: int | None) -> Iterator[Frame]:
        info = self.info
        stop = len(self._files) if count is None else min(len(self._files), start + count)
        first_pts = round(info.start_time / info.time_base)  # pts count frames of the folder
        for index in range(start, stop):
            path = self._files[index]
            frame, _ = _read_image(path)
            image = frame_to_array(frame, _default_matrix(info.kind, frame))
            image = _rotate(image, _display_rotation(frame))
            if image.shape[:2] != (info.height, info.width):
                raise InputError(
                    f"{path}: is {image.shape[1]}x{image.shape[0]} but the sequence is "
                    f"{info.width}x{info.height}; process such folders as separate images"
                )
            pts = first_pts + index
            yield Frame(with_channels(image, info.channels), index, pts, info.time_base)

    def _pts_list(self) -> list[int]:
        if self._selection_pts is None:
            self._selection_pts = _selected_pts(self.info)
        return self._selection_pts

    def _video_frames(self, start: int, count: int | None) -> Iterator[Frame]:
        info = self.info
        trimmed = start > 0 or info.start_time > 0 or info.end_time is not None
        pts_list = self._pts_list() if trimmed else self._selection_pts
        # Demuxed timestamps bound the selection exactly; a container's frame count does not
        # (decoding runs to the end of the file and only warns when it comes up short).
        limit = None if pts_list is None else max(0, len(pts_list) - start)
        expected = limit if pts_list is not None else info.frame_count
        if count is not None:
            limit = count if limit is None else min(limit, count)
            expected = None if expected is None else min(expected, count)
        if limit == 0:
            return
        first_pts = pts_list[start] if pts_list else None
        yielded = 0
        for pts, frame in _decoded(info.path, first_pts):
            if first_pts is not None and pts < first_pts:
                continue
            image = _rotate(frame_to_array(frame, _default_matrix("video", frame)), info.rotation)
            yield Frame(with_channels(image, info.channels), start + yielded, pts, info.time_base)
            yielded += 1
            if yielded == limit:
                return
        if expected is not None and yielded < expected:
            logger.warning(
                "%s: ended after %d of %d frames; the file may be truncated or corrupt",
                info.path, start + yielded, start + expected,
            )  # fmt: skip


def _decoded(path: Path, seek_pts: int | None) -> Iterator[tuple[int, av.VideoFrame]]:
    """(pts, frame) of the video stream, from the keyframe before ``seek_pts``; bad packets skip.

    Frames without a timestamp get one frame duration past the previous frame.
    """
    with _open_container(path) as container:
        stream = _video_stream(container, path)
        stream.thread_type = "AUTO"
        step = _frame_step(stream)
        if seek_pts is not None:
            container.seek(seek_pts, stream=stream, backward=True)
        packets = container.demux(stream)
        last_pts: int | None = None
        while True:
            try:
                packet = next(packets)
            except StopIteration:
                return
            except av.FFmpegError as error:
                logger.warning("%s: stopped reading (%s)", path, _reason(error))
                return
            try:
                decoded = packet.decode()
            except av.FFmpegError as error:
                logger.warning("%s: skipped an undecodable packet (%s)", path, _reason(error))
                continue
            for frame in decoded:
                if frame.pts is None:
                    frame.pts = 0 if last_pts is None else last_pts + step
                if last_pts is None and seek_pts is not None and frame.pts > seek_pts:
                    # The demuxer seeked past the wanted frame: decode from the start instead.
                    yield from _decoded(path, None)
                    return
                last_pts = frame.pts
                yield frame.pts, frame


def _frame_step(stream: av.video.VideoStream) -> int:
    """One frame duration in time-base units, for frames that carry no timestamp."""
    rate = stream.average_rate or DEFAULT_SEQUENCE_FPS
    return max(1, round(1 / (rate * stream.time_base)))


def _packet_pts(path: Path) -> list[int]:
    """Sorted presentation timestamps of the video packets, read by demuxing without decoding.

    Streams without timestamps (raw bitstreams) get the ones :func:`_decoded` gives them.
    """
    with _open_container(path) as container:
        stream = _video_stream(container, path)
        step = _frame_step(stream)
        stamps = []
        try:
            for packet in container.demux(stream):
                if packet.size and not packet.is_discard:
                    stamps.append(packet.pts if packet.pts is not None else packet.dts)
        except av.FFmpegError as error:
            logger.warning("%s: demuxing stopped early (%s)", path, _reason(error))
    if any(stamp is None for stamp in stamps):
        return [index * step for index in range(len(stamps))]
    return sorted(stamps)


def _selected_pts(info: MediaInfo) -> list[int]:
    """The pts of the frames inside [start_time, end_time) of a video."""
    stamps = _packet_pts(info.path)
    low = info.start_time / info.time_base
    high = math.inf if info.end_time is None else info.end_time / info.time_base
    return [pts for pts in stamps if low - 1e-6 <= pts < high - 1e-6]


def _open_video(
    path: Path, start: float, duration: float | None, max_frames: int | None
) -> MediaSource:
    end_time = None if duration is None else start + duration
    with _open_container(path) as container:
        stream = _video_stream(container, path)
        fps = stream.average_rate or stream.guessed_rate or DEFAULT_SEQUENCE_FPS
        indexed_count = stream.frames
        info = MediaInfo(
            kind="video", path=path, frame_count=None, fps=Fraction(fps),
            time_base=stream.time_base, has_audio=bool(container.streams.audio),
            has_subtitles=bool(container.streams.subtitles), start_time=start,
            end_time=end_time,
            **_probe(_first_frame(container, path), "video", stream.codec_context.name),
        )  # fmt: skip
    trimmed = start > 0 or end_time is not None or max_frames is not None
    if indexed_count > 0 and not trimmed:
        return MediaSource(replace(info, frame_count=indexed_count), [], None)
    selected = _selected_pts(info)
    if max_frames is not None and len(selected) > max_frames:
        end_time = float(selected[max_frames] * info.time_base)
        selected = selected[:max_frames]
    if not selected:
        raise InputError(f"{path}: has no video frames in the selected time range")
    return MediaSource(replace(info, frame_count=len(selected), end_time=end_time), [], selected)


def _open_images(
    path: Path,
    files: list[Path],
    fps: Fraction,
    start: float,
    duration: float | None,
    max_frames: int | None,
) -> MediaSource:
    kind = "image" if path.is_file() else "sequence"
    first = math.ceil(start * fps - 1e-9)
    last = len(files) if duration is None else math.ceil((start + duration) * fps - 1e-9)
    selected = files[first:last][:max_frames]
    if not selected:
        raise InputError(f"{path}: no images in the selected range (start {start} s at {fps} fps)")
    head, decoder = _read_image(selected[0])
    probe = _probe(head, kind, decoder)
    info = MediaInfo(
        kind=kind, path=path, frame_count=len(selected), fps=fps, time_base=1 / fps,
        has_audio=False, has_subtitles=False, start_time=first / fps,
        end_time=None if first + len(selected) == len(files) else (first + len(selected)) / fps,
        **probe,
    )  # fmt: skip
    return MediaSource(info, selected, None)


def open_media(
    path: str | Path,
    *,
    start: float = 0.0,
    duration: float | None = None,
    max_frames: int | None = None,
    fps: Fraction | float | None = None,
) -> MediaSource:
    """Open a video file, an image file or a folder of images (a frame sequence).

    Args:
        path: the input.
        start: seconds to skip at the beginning.
        duration: seconds to keep from ``start`` (None: to the end).
        max_frames: keep at most this many frames.
        fps: frame rate of an image sequence (default 25); ignored for video.

    Raises:
        InputError: missing path, unsupported extension, empty folder, unreadable, truncated
            (index missing) or frameless file; the message names the file and the problem.
    """
    path = Path(path)
    _check_trim(start, duration, max_frames)
    if not path.exists():
        raise InputError(f"{path}: no such file or folder")
    rate = DEFAULT_SEQUENCE_FPS if fps is None else Fraction(fps).limit_denominator(1_000_000)
    if path.is_dir():
        files = image_files(path)
        if not files:
            extensions = ", ".join(sorted(IMAGE_EXTENSIONS))
            raise InputError(f"{path}: folder holds no images ({extensions})")
        return _open_images(path, files, rate, start, duration, max_frames)
    suffix = path.suffix.lower()
    if suffix in IMAGE_EXTENSIONS:
        return _open_images(path, [path], rate, 0.0, None, None)
    if suffix in VIDEO_EXTENSIONS:
        return _open_video(path, start, duration, max_frames)
    raise InputError(
        f"{path}: unsupported file type {suffix or '(no extension)'!r}; expected a video "
        f"(.mp4, .mkv, .mov, .webm, ...), an image ({', '.join(sorted(IMAGE_EXTENSIONS))}) "
        "or a folder of images"
    )


def read_frames(path: str | Path, **options: object) -> np.ndarray:  # (t, h, w, c)
    """All selected frames of a small input in one float32 array; options of :func:`open_media`."""
    source = open_media(path, **options)
    return np.stack([frame.image for frame in source.frames()])
