"""Carry the audio and subtitle streams of a source file into a new output container.

Packets are copied unchanged whenever the output container accepts the codec (probed by writing
a header into memory, which catches what ``supported_codecs`` misses, e.g. FLAC in .mov). If it
does not, audio is re-encoded to AAC and text subtitles to the container's text format
(mov_text in .mp4/.mov, ASS in .mkv); bitmap subtitles are then dropped with a warning.

The writer calls :meth:`StreamCopier.pump` before each video packet, so the streams are
interleaved by time and nothing is buffered beyond one packet.
"""

from __future__ import annotations

import io
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import av

from seedvr2.errors import InputError

from .local import open_input

logger = logging.getLogger(__name__)

TEXT_SUBTITLE_CODECS = {"mp4": "mov_text", "mov": "mov_text", "matroska": "ass"}
"""Text subtitle encoder per output container format."""
_TEXT_SUBTITLES = {"ass", "ssa", "subrip", "srt", "mov_text", "webvtt", "text"}
_DEFAULT_LAYOUTS = {
    1: "mono",
    2: "stereo",
    3: "2.1",
    4: "quad",
    5: "5.0",
    6: "5.1",
    7: "6.1",
    8: "7.1",
}
AAC_BIT_RATE = 192_000


@dataclass
class _Route:
    source: av.stream.Stream
    output: av.stream.Stream
    mode: Literal["copy", "audio", "subtitle"]


def _accepts(format_name: str, stream: av.stream.Stream) -> bool:
    """Whether a ``format_name`` container can hold ``stream``'s packets as they are."""
    try:
        with av.open(io.BytesIO(), "w", format=format_name) as probe:
            probe.add_stream_from_template(stream)
            probe.start_encoding()
    except (av.FFmpegError, ValueError):
        return False
    return True


def _shift(value: int | None, offset: int) -> int | None:
    return None if value is None else value - offset


class StreamCopier:
    """Copies every audio and subtitle stream of ``source`` into ``output``.

    Args:
        source: the file the video came from.
        output: the output container; streams are added here, so build the copier before the
            first packet is muxed.
        offset: source time (seconds) that becomes 0 in the output; earlier packets are dropped.
        end: source time (seconds) where copying stops, None for the end of the file.
    """

    def __init__(
        self, source: Path, output: av.container.OutputContainer, offset: float, end: float | None
    ):
        try:
            self._input = open_input(source)
        except (av.FFmpegError, OSError) as error:
            raise InputError(f"{source}: cannot read its audio/subtitles ({error})") from None
        self._output = output
        self._offset = offset
        self._end = end
        streams = [*self._input.streams.audio, *self._input.streams.subtitles]
        routes = (self._route(stream) for stream in streams)
        self._routes = {route.source.index: route for route in routes if route is not None}
        sources = [route.source for route in self._routes.values()]
        self._packets = self._input.demux(*sources) if sources else iter(())
        self._pending = next(self._packets, None)

    def _route(self, stream: av.stream.Stream) -> _Route | None:
        output, format_name = self._output, self._output.format.name.split(",")[0]
        if _accepts(format_name, stream):
            route = _Route(stream, output.add_stream_from_template(stream), "copy")
        elif stream.type == "audio":
            layout = stream.codec_context.layout
            name = _DEFAULT_LAYOUTS.get(layout.nb_channels)
            if name is None:
                logger.warning("dropping %d-channel audio: AAC holds at most 8", layout.nb_channels)
                return None
            aac = output.add_stream("aac", rate=stream.codec_context.sample_rate)
            aac.layout = name if layout.name.endswith("channels") else layout.name
            aac.bit_rate = AAC_BIT_RATE
            logger.info(
                "re-encoding %s audio to AAC for %s", stream.codec_context.name, format_name
            )
            route = _Route(stream, aac, "audio")
        elif stream.codec_context.name in _TEXT_SUBTITLES and format_name in TEXT_SUBTITLE_CODECS:
            stream.codec_context.open()  # sets subtitle_header, which the encoder needs
            text = output.add_stream(TEXT_SUBTITLE_CODECS[format_name])
            text.codec_context.subtitle_header = stream.codec_context.subtitle_header
            route = _Route(stream, text, "subtitle")
        else:
            logger.warning(
                "dropping %s subtitles: %s cannot hold them",
                stream.codec_context.name,
                format_name,
            )
            return None
        for key in ("language", "title"):
            if key in stream.metadata:
                route.output.metadata[key] = stream.metadata[key]
        route.output.disposition = stream.disposition
        return route

    def pump(self, until: float | None) -> None:
        """Mux the source packets that start before output time ``until`` (None: all)."""
        while self._pending is not None:
            packet = self._pending
            stamp = packet.pts if packet.pts is not None else packet.dts
            late = until is not None and stamp is not None
            if late and float(stamp * packet.time_base) - self._offset >= until:
                return
            self._pending = next(self._packets, None)
            if packet.size and stamp is not None:
                self._emit(packet, float(stamp * packet.time_base))

    def _emit(self, packet: av.Packet, time: float) -> None:
        # Untrimmed copies (output starts at source time 0) keep pre-roll such as AAC priming
        # (negative timestamps); trimmed ones start with the first packet overlapping the start.
        end_time = time + float((packet.duration or 0) * packet.time_base)
        if self._offset > 1e-6 and end_time <= self._offset + 1e-6:
            return
        if self._end is not None and time >= self._end:
            return
        route = self._routes[packet.stream.index]
        offset = round(self._offset / packet.time_base)
        if route.mode == "copy":
            packet.pts, packet.dts = _shift(packet.pts, offset), _shift(packet.dts, offset)
            packet.stream = route.output
            self._output.mux(packet)
        elif route.mode == "audio":
            for frame in route.source.decode(packet):
                frame.pts = _shift(frame.pts, round(self._offset / frame.time_base))
                self._output.mux(route.output.encode(frame))
        else:
            subtitle = route.source.codec_context.decode2(packet)
            if subtitle is None:
                return
            converted = route.output.codec_context.encode_subtitle(subtitle)
            converted.pts, converted.dts = _shift(packet.pts, offset), _shift(packet.dts, offset)
            converted.duration, converted.time_base = packet.duration, packet.time_base
            converted.stream = route.output
            self._output.mux(converted)

    def finish(self) -> None:
        """Mux everything left and flush the audio encoders."""
        self.pump(None)
        for route in self._routes.values():
            if route.mode == "audio":
                self._output.mux(route.output.encode(None))

    def close(self) -> None:
        """Release the source file (also after a failure)."""
        self._input.close()
