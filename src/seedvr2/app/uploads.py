"""Uploads: what a file is, judged by its content (never its name), within the server's limits.

An accepted upload is linked (or copied) into the job's own folder under a name this module
chooses, so neither the name nor the path a browser or client sent ever reaches the file system.
"""

from __future__ import annotations

import os
import re
import shutil
from dataclasses import dataclass
from pathlib import Path

import av

from seedvr2.errors import InputError
from seedvr2.media import MediaInfo, open_media
from seedvr2.media.local import open_input
from seedvr2.pipeline.jobs import frame_count

# FFmpeg demuxer (what the content is) -> the file type the job reads it as.
IMAGE_DEMUXERS = {
    "png_pipe": ".png", "jpeg_pipe": ".jpg", "webp_pipe": ".webp", "tiff_pipe": ".tiff",
    "bmp_pipe": ".bmp",
}  # fmt: skip
VIDEO_DEMUXERS = {
    "mov,mp4,m4a,3gp,3g2,mj2": ".mp4", "matroska,webm": ".mkv", "avi": ".avi", "gif": ".gif",
    "mpegts": ".ts", "mpeg": ".mpg", "flv": ".flv", "asf": ".wmv", "ogg": ".ogv",
    "yuv4mpegpipe": ".y4m", "apng": ".apng", "ivf": ".ivf", "mxf": ".mxf", "dv": ".dv",
    "h264": ".h264", "hevc": ".hevc", "nut": ".nut",
}  # fmt: skip
KINDS = "a video (mp4, mkv, mov, webm, avi, ...) or an image (png, jpg, webp, tiff, bmp)"


@dataclass(frozen=True)
class Limits:
    """What the server accepts per file (None: no limit)."""

    max_bytes: int | None = None
    max_seconds: float | None = None


@dataclass(frozen=True)
class Upload:
    """An accepted upload inside a job folder."""

    name: str  # the file name the user gave, for messages and the download's name only
    path: Path  # the job folder's copy
    info: MediaInfo
    frames: int

    @property
    def stem(self) -> str:
        """The name's stem made safe as a file name (letters, digits, ``-``, ``_``, ``.``)."""
        stem = re.sub(r"[^\w.-]+", "_", Path(self.name).stem).strip("._")
        return stem[:80] or "restored"


def content_suffix(path: Path, name: str) -> str:
    """The file type ``path`` holds (``.mp4``, ``.png`` ...), from its content.

    Raises:
        InputError: the content is no video or image this app takes.
    """
    try:
        with open_input(path) as container:
            demuxer = container.format.name
            has_video = bool(container.streams.video)
    except (av.FFmpegError, OSError, ValueError):
        raise InputError(f"{name} is not {KINDS}; its content is not a picture or a film") from None
    suffix = IMAGE_DEMUXERS.get(demuxer) or VIDEO_DEMUXERS.get(demuxer)
    if suffix is None or not has_video:
        raise InputError(f"{name} is not {KINDS} (its content is {demuxer})")
    return suffix


def accept(upload: Path, name: str, folder: Path, limits: Limits) -> Upload:
    """Check ``upload`` (sent as ``name``) and place it in ``folder`` as ``input.<type>``.

    Raises:
        InputError: one line naming the file and what to do: not media, damaged, too big or
            too long.
    """
    size = upload.stat().st_size
    if limits.max_bytes is not None and size > limits.max_bytes:
        raise InputError(f"{name} is {_mb(size)}; this server takes files up to "
                         f"{_mb(limits.max_bytes)}: send a shorter or smaller file")  # fmt: skip
    path = folder / f"input{content_suffix(upload, name)}"
    folder.mkdir(parents=True, exist_ok=True)
    try:
        os.link(upload, path)  # no copy of large files; removing the job removes only this name
    except OSError:
        shutil.copyfile(upload, path)
    try:
        source = open_media(path)
        frames = frame_count(source)
    except InputError as error:
        raise InputError(str(error).replace(str(path), name)) from None
    seconds = frames / float(source.info.fps) if source.info.kind == "video" else 0.0
    if limits.max_seconds is not None and seconds > limits.max_seconds:
        raise InputError(f"{name} lasts {seconds:.0f} s; this server restores clips up to "
                         f"{limits.max_seconds:g} s: cut it shorter and send it again")  # fmt: skip
    return Upload(name, path, source.info, frames)


def _mb(count: int) -> str:
    return f"{count / 2**20:.0f} MB" if count >= 2**20 else f"{count / 2**20:.2f} MB"
