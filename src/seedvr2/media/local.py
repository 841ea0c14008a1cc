"""Open local files with FFmpeg as local files, whatever their names, and nothing else.

FFmpeg takes file names as URLs: ``file:x.mp4`` would open ``x.mp4``, ``http:...`` a network
connection, ``a%d.png`` the numbered files ``a0.png``, ``a1.png``, ... Every path is therefore
given as an absolute ``file:`` URL; inputs may only open further files through the file protocol
(no network), and demuxers that read other files or streams named inside the input (playlists,
concat lists, stream descriptions) are not used at all.
"""

from __future__ import annotations

import os
from pathlib import Path

import av

NESTED_DEMUXERS = frozenset({"concat", "dash", "hls", "imf", "rtp", "rtsp", "sdp"})
"""Demuxers that open files or URLs named inside their input."""

_INPUT_OPTIONS = {
    "protocol_whitelist": "file",
    "format_whitelist": ",".join(sorted(set(av.formats_available) - NESTED_DEMUXERS)),
    "pattern_type": "none",  # image2: the name is a file, not a numbered pattern
}


def local_url(path: str | Path) -> str:
    """The ``file:`` URL of ``path`` (absolute, so no part of the name reads as a protocol)."""
    return "file:" + os.path.abspath(path)


def open_input(path: str | Path) -> av.container.InputContainer:
    """Open ``path`` for reading; FFmpeg errors propagate (callers word them)."""
    return av.open(
        local_url(path), container_options=dict(_INPUT_OPTIONS), metadata_errors="ignore"
    )


def open_output(path: str | Path, format_name: str) -> av.container.OutputContainer:
    """Create ``path`` as a ``format_name`` container whose bytes depend only on its content.

    ``bitexact`` leaves out what differs between runs (Matroska's random UIDs) or FFmpeg builds
    (version strings).
    """
    return av.open(
        local_url(path), "w", format=format_name, container_options={"fflags": "+bitexact"}
    )
