"""Write float RGB(A) frames to a video file, one image file or a PNG-sequence folder.

The output kind follows the path: .mp4/.mkv/.mov/.webm/.gif is a video, .png/.jpg/.jpeg/.webp/
.tif/.tiff/.bmp one image, a path without extension (or an existing folder) a folder of ``000000.png``,
``000001.png``, ... Everything is written under a temporary name in the destination folder and
renamed into place by :meth:`MediaWriter.close`; on any error nothing half-written remains.
The same frames and settings give the same bytes (no timestamps, random IDs or machine-dependent
thread counts in the output). What an output cannot keep of the source is said once per output.
"""

from __future__ import annotations

import contextlib
import io
import logging
from collections.abc import Iterator
from dataclasses import replace
from fractions import Fraction
from pathlib import Path
from types import TracebackType

import av
import numpy as np

from seedvr2.errors import OutputError

from .atomic import AtomicOutput
from .colorspace import MATRICES
from .convert import apply_color_tags, array_to_frame, check_color
from .encode import (
    CHROMAS,
    ENCODER_THREADS,
    IMAGE_ENCODERS,
    VIDEO_CODECS,
    VIDEO_FORMATS,
    VideoCodec,
    check_video_settings,
    encode_image,
    encoder_options,
    fit_pix_fmt,
    image_pix_fmt,
    padded_size,
)
from .local import open_output
from .palette import PaletteQuantizer
from .remux import StreamCopier
from .types import ColorInfo, MediaInfo

logger = logging.getLogger(__name__)
MAX_REORDER = 16  # frames an encoder may hold back (x264/x265 b-frames at most)


class _VideoSink:
    """Encoder and muxer of one video file; the stream is set up from the first frame."""

    def __init__(self, temp: Path, suffix: str, writer: MediaWriter):
        self._writer = writer
        self._spec = VIDEO_CODECS[writer.codec]
        try:
            self._container = open_output(temp, VIDEO_FORMATS[suffix])
        except (av.FFmpegError, OSError) as error:
            raise OutputError(f"{writer.path}: cannot create the file ({error})") from None
        codec_id = av.codec.Codec(self._spec.encoder, "w").canonical_name
        if codec_id not in self._container.supported_codecs:
            self._container.close()
            fitting = [s for s, f in VIDEO_FORMATS.items() if s != suffix and _holds(f, codec_id)]
            raise OutputError(
                f"{writer.path}: {writer.codec} cannot be stored in {suffix} files; "
                f"use {' or '.join(fitting)}"
            )
        self._stream: av.video.VideoStream | None = None
        self._copier: StreamCopier | None = None
        self._palette: PaletteQuantizer | None = None
        self._first_pts = 0
        self._dts_offset: int | None = None  # see _repair_dts

    def _start(self, image: np.ndarray, pts: int) -> None:
        writer, container = self._writer, self._container
        height, width, channels = image.shape
        alpha = channels == 4
        pix_fmt, changes = writer.pix_fmt, []
        if pix_fmt is None:
            pix_fmt, changes = fit_pix_fmt(
                writer.codec, alpha, writer.bit_depth, writer.chroma, writer.gray
            )
        fmt = av.VideoFormat(pix_fmt)
        if alpha and not (fmt.components[-1].is_alpha or fmt.has_palette):
            changes.append(f"alpha is dropped ({writer.codec} {pix_fmt} has none)")
        self._coded_size = padded_size(writer.codec, pix_fmt, width, height)
        if self._coded_size != (width, height):
            changes.append(
                f"{width}x{height} is padded to {self._coded_size[0]}x{self._coded_size[1]} by repeating "
                f"the last column/row ({writer.codec} {pix_fmt} needs even sizes; a 4:4:4 "
                "pix_fmt keeps the exact size)"
            )
        if changes:
            logger.warning("%s: %s", writer.path, "; ".join(changes))
        stream = container.add_stream(
            self._spec.encoder,
            rate=writer.fps,
            options=encoder_options(writer.codec, pix_fmt, writer.crf, writer.preset,
                                    writer.encoder_options, *self._coded_size),
        )  # fmt: skip
        stream.width, stream.height = self._coded_size
        stream.pix_fmt = pix_fmt
        stream.codec_context.thread_count = ENCODER_THREADS
        stream.time_base = stream.codec_context.time_base = writer.time_base
        rgb = fmt.is_rgb or fmt.has_palette
        self._color = replace(writer.color, matrix="rgb", range="full") if rgb else writer.color
        apply_color_tags(stream.codec_context, self._color)
        if writer.codec == "h265" and container.format.name.startswith("mov"):
            stream.codec_tag = "hvc1"  # what Apple players require
        self._palette = PaletteQuantizer(writer.time_base) if fmt.has_palette else None
        self._stream, self._pix_fmt, self._first_pts = stream, pix_fmt, pts
        if writer.copy_streams_from is not None:
            offset = float(pts * writer.time_base)
            self._copier = StreamCopier(
                writer.copy_streams_from, container, offset, writer.streams_end
            )

    def write(self, image: np.ndarray, pts: int) -> None:
        if self._stream is None:
            self._start(image, pts)
        width, height = self._coded_size
        extra = ((0, height - image.shape[0]), (0, width - image.shape[1]), (0, 0))
        image = np.pad(image, extra, mode="edge") if any(extra[0] + extra[1]) else image
        pts -= self._first_pts
        if self._palette is not None:
            for frame in self._palette.frames(image, pts):
                self._mux(self._stream.encode(frame))
            return
        frame = array_to_frame(image, self._pix_fmt, self._color)
        frame.pts, frame.time_base = pts, self._writer.time_base
        self._mux(self._stream.encode(frame))

    def _mux(self, packets: list[av.Packet]) -> None:
        for packet in packets:
            self._repair_dts(packet)
            if self._copier is not None:
                stamp = packet.dts if packet.dts is not None else packet.pts
                self._copier.pump(float(stamp * packet.time_base))
            self._container.mux(packet)

    def _repair_dts(self, packet: av.Packet) -> None:
        """Undo the garbage offset libx265 puts on the decode times of clips under 3 frames.

        Their first packet's decode time lies some 1e18 ticks before or after its presentation time
        (no encoder reorders that far: at most :data:`MAX_REORDER` frames, and never backwards), so
        muxers refuse the packets at random. The offset is the same for every packet, and with so few frames
        nothing is reordered, so decode times are set back by it: then they equal the
        presentation times.
        """
        if packet.dts is None or packet.pts is None:
            return
        if self._dts_offset is None:
            lag = packet.pts - packet.dts
            reorder = MAX_REORDER / (self._writer.fps * packet.time_base)
            self._dts_offset = lag if abs(lag) > reorder else 0
        packet.dts += self._dts_offset

    def close(self) -> None:
        try:
            if self._palette is not None:
                for frame in self._palette.frames(None, None):
                    self._mux(self._stream.encode(frame))
            if self._stream is not None:
                self._mux(self._stream.encode(None))
            if self._copier is not None:
                self._copier.finish()
        finally:
            if self._copier is not None:
                self._copier.close()
            self._container.close()

    def abort(self) -> None:
        if self._copier is not None:
            self._copier.close()
        with contextlib.suppress(av.FFmpegError, OSError):  # the file is deleted anyway
            self._container.close()


def _holds(format_name: str, codec_id: str) -> bool:
    with av.open(io.BytesIO(), "w", format=format_name) as probe:
        return codec_id in probe.supported_codecs


class _FileSink:
    """Base of the sinks that write whole image files per frame; the format is fitted once."""

    def __init__(self, temp: Path, suffix: str, writer: MediaWriter):
        self._temp, self._suffix, self._writer = temp, suffix, writer
        self._pix_fmt: str | None = None
        self._count = 0

    def _encode(self, image: np.ndarray, suffix: str) -> bytes:
        if self._pix_fmt is None:
            writer = self._writer
            alpha = image.shape[-1] == 4
            self._pix_fmt = image_pix_fmt(suffix, alpha, writer.bit_depth, writer.gray)
        return encode_image(image, suffix, self._pix_fmt)

    def close(self) -> None:
        pass

    def abort(self) -> None:
        pass


class _ImageSink(_FileSink):
    """One image file."""

    def write(self, image: np.ndarray, pts: int) -> None:
        if self._count:
            raise ValueError("an image file holds one frame; write to a video or a folder")
        self._temp.write_bytes(self._encode(image, self._suffix))
        self._count = 1


class _SequenceSink(_FileSink):
    """A folder of numbered PNG files."""

    def write(self, image: np.ndarray, pts: int) -> None:
        (self._temp / f"{self._count:06d}.png").write_bytes(self._encode(image, ".png"))
        self._count += 1


class MediaWriter:
    """Writes frames to ``path``; use as a context manager (or call :meth:`close`/:meth:`abort`).

    Args:
        path: output file or folder (kind by extension, see the module docstring).
        fps: frame rate; also sets the default time base 1/fps.
        time_base: unit of the ``pts`` passed to :meth:`write`, e.g. the source's, so variable
            frame rate timestamps are kept exactly. Default 1/fps.
        codec: video codec: h264, h265, ffv1 (lossless), prores, vp9 (.webm) or gif.
        crf: rate control (default 18 for h264, 20 for h265, 30 for vp9); preset: x264/x265.
        pix_fmt: encoder pixel format, e.g. yuv420p, yuv420p10le, yuv444p, yuva444p10le. Default:
            the codec's (yuv420p; ffv1 yuv444p10le; prores yuv422p10le; gif pal8) or its alpha
            variant when frames have alpha (ffv1, prores 4444, vp9), raised to keep
            ``bit_depth``, ``chroma`` and ``gray`` where the codec can (see :mod:`.encode`).
        bit_depth: bits per component to keep (8-16): images and sequences are 16-bit PNG/TIFF
            above 8; videos get at least this depth where the codec holds it.
        chroma: chroma subsampling to keep ("4:2:0", "4:2:2", "4:4:4"), None for RGB sources.
        gray: write grey formats (the luma of the frames) where the output holds them.
        color: colour tags to write (missing ones BT.709, limited range); the matrix and range
            also drive the RGB -> Y'CbCr conversion.
        copy_streams_from: file whose audio and subtitle streams are copied into the video.
        streams_end: source time (s) where copied streams stop; they start at the first frame.
        encoder_options: extra FFmpeg encoder options, e.g. {"tune": "grain"}.
        overwrite: replace an existing output; otherwise OutputError.

    Raises:
        OutputError: existing output without ``overwrite``, unwritable folder, unsupported
            extension, codec or pixel format.
    """

    def __init__(
        self,
        path: str | Path,
        *,
        fps: Fraction | float = 25,
        time_base: Fraction | None = None,
        codec: VideoCodec = "h264",
        crf: int | None = None,
        preset: str | None = None,
        pix_fmt: str | None = None,
        bit_depth: int = 8,
        chroma: str | None = None,
        gray: bool = False,
        color: ColorInfo | None = None,
        copy_streams_from: str | Path | None = None,
        streams_end: float | None = None,
        encoder_options: dict[str, str] | None = None,
        overwrite: bool = False,
    ):
        self.path = Path(path)
        self.fps = Fraction(fps).limit_denominator(1_000_000)
        self.time_base = time_base or 1 / self.fps
        self.codec, self.crf, self.preset, self.pix_fmt = codec, crf, preset, pix_fmt
        self.bit_depth, self.chroma, self.gray = bit_depth, chroma, gray
        self.color = (color or ColorInfo()).or_defaults()
        self.copy_streams_from = None if copy_streams_from is None else Path(copy_streams_from)
        self.streams_end = streams_end
        self.encoder_options = dict(encoder_options or {})
        self._check_settings()
        suffix = self.path.suffix.lower()
        folder = not suffix or self.path.is_dir()
        if not folder and suffix not in VIDEO_FORMATS and suffix not in IMAGE_ENCODERS:
            raise OutputError(
                f"{self.path}: unsupported output type {suffix!r}; use {', '.join(VIDEO_FORMATS)} for "
                f"video, {', '.join(IMAGE_ENCODERS)} for an image, or a folder for PNG frames"
            )
        self._output = AtomicOutput(self.path, folder=folder, overwrite=overwrite)
        sink = _SequenceSink if folder else _VideoSink if suffix in VIDEO_FORMATS else _ImageSink
        try:
            self._sink = sink(self._output.temp, suffix, self)
        except BaseException:
            self._output.discard()
            raise
        self._step = max(1, round(1 / (self.fps * self.time_base)))
        self._last_pts: int | None = None
        self._size: tuple[int, int] | None = None
        self.frames_written = 0
        self._open = True

    @classmethod
    def for_source(cls, path: str | Path, info: MediaInfo, **options: object) -> MediaWriter:
        """A writer keeping ``info``'s frame rate, time base, colour tags, audio, subtitles, bit
        depth, chroma subsampling and greyness.

        Pass each source frame's ``pts`` to :meth:`write`; ``options`` override the defaults.
        """
        copy = info.kind == "video" and (info.has_audio or info.has_subtitles)
        # Only a video's Y'CbCr tags carry over (PNG reports "rgb", full range).
        color = info.color if info.kind == "video" else ColorInfo()
        if color.matrix not in MATRICES:
            color = replace(color, matrix=None)
        defaults = {
            "fps": info.fps,
            "time_base": info.time_base,
            "color": color,
            "copy_streams_from": info.path if copy else None,
            "streams_end": info.end_time,
            "bit_depth": info.bit_depth,
            "chroma": info.chroma,
            "gray": info.gray,
        }
        return cls(path, **(defaults | options))

    def _check_settings(self) -> None:
        if self.path.suffix.lower() in VIDEO_FORMATS:
            check_video_settings(self.codec, self.pix_fmt, self.crf, self.preset)
        if not 8 <= self.bit_depth <= 16:
            raise OutputError(f"bit depth must be 8 to 16, got {self.bit_depth}")
        if self.chroma is not None and self.chroma not in CHROMAS:
            raise OutputError(f"chroma must be one of {', '.join(CHROMAS)}, got {self.chroma!r}")
        try:
            check_color(self.color)
        except ValueError as error:
            raise OutputError(f"{self.path}: {error}") from None

    def _check_image(self, image: np.ndarray) -> None:
        if image.ndim != 3 or image.shape[-1] not in (3, 4) or image.dtype.kind != "f":
            raise ValueError(f"expected a float (h, w, 3|4) image, got {image.dtype} {image.shape}")
        if self._size is not None and image.shape[:2] != self._size:
            raise ValueError(f"frame size {image.shape[:2]} differs from the first {self._size}")

    def write(self, image: np.ndarray, pts: int | None = None) -> None:
        """Append one frame: float (h, w, 3|4) in [0, 1]; ``pts`` in :attr:`time_base` units.

        Without ``pts`` frames follow each other at ``fps``. Timestamps must increase; the
        output starts at time 0 (the first frame's ``pts`` is subtracted).
        """
        if not self._open:
            raise ValueError(f"{self.path}: writer is closed")
        image = np.asarray(image)
        self._check_image(image)
        if pts is None:
            pts = 0 if self._last_pts is None else self._last_pts + self._step
        elif self._last_pts is not None and pts <= self._last_pts:
            raise ValueError(f"pts {pts} does not increase (previous {self._last_pts})")
        with self._aborting_on_error("writing"):
            self._sink.write(image, pts)
        self._size, self._last_pts = image.shape[:2], pts
        self.frames_written += 1

    def close(self) -> None:
        """Finish the file and move it into place (no-op when already closed or aborted)."""
        if not self._open:
            return
        if self.frames_written == 0:
            self.abort()
            raise OutputError(f"{self.path}: no frames were written; nothing was saved")
        with self._aborting_on_error("finishing the file"):
            self._sink.close()
        self._open = False
        self._output.commit()

    @contextlib.contextmanager
    def _aborting_on_error(self, step: str) -> Iterator[None]:
        """Abort on any exception; FFmpeg and OS errors become OutputError."""
        try:
            yield
        except (av.FFmpegError, OSError) as error:
            self.abort()
            raise OutputError(f"{self.path}: {step} failed ({error})") from None
        except BaseException:
            self.abort()
            raise

    def abort(self) -> None:
        """Drop everything written so far; the target path is left as it was."""
        if self._open:
            self._open = False
            self._sink.abort()
            self._output.discard()

    def __enter__(self) -> MediaWriter:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()
