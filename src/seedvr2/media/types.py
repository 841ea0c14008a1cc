"""Value types shared by the reader and the writer: colour tags, stream facts, decoded frames."""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Literal

import numpy as np

MediaKind = Literal["video", "image", "sequence"]

IMAGE_EXTENSIONS = frozenset({".png", ".jpg", ".jpeg", ".webp", ".tiff", ".tif", ".bmp"})
"""Single-image files, read and written with PyAV's image codecs."""

VIDEO_EXTENSIONS = frozenset(
    {
        ".mp4", ".m4v", ".mov", ".mkv", ".webm", ".avi", ".wmv", ".flv", ".mpg", ".mpeg",
        ".m2v", ".ts", ".m2ts", ".mts", ".mxf", ".3gp", ".ogv", ".vob", ".dv", ".y4m",
        ".gif", ".apng", ".nut", ".h264", ".264", ".h265", ".265", ".hevc", ".ivf", ".rm",
    }
)  # fmt: skip
"""Files opened as video. An allowlist: FFmpeg would also "decode" a .txt file (tty demuxer)."""


@dataclass(frozen=True)
class ColorInfo:
    """Colour tags of a stream, as FFmpeg names them; None where the file does not say.

    Attributes:
        primaries: colour primaries, e.g. "bt709", "smpte170m", "bt2020".
        transfer: transfer characteristic, e.g. "bt709", "smpte2084", "arib_std_b67".
        matrix: Y'CbCr matrix, e.g. "bt709", "smpte170m", "bt2020nc".
        range: "limited" (16-235 at 8 bits) or "full" (0-255).
    """

    primaries: str | None = None
    transfer: str | None = None
    matrix: str | None = None
    range: Literal["limited", "full"] | None = None

    @classmethod
    def bt709(cls) -> ColorInfo:
        """HD video: BT.709 primaries, transfer and matrix, limited range."""
        return cls("bt709", "bt709", "bt709", "limited")

    def or_defaults(self) -> ColorInfo:
        """These tags with each missing one taken from :meth:`bt709`."""
        default = ColorInfo.bt709()
        return ColorInfo(
            self.primaries or default.primaries,
            self.transfer or default.transfer,
            self.matrix or default.matrix,
            self.range or default.range,
        )


@dataclass(frozen=True)
class MediaInfo:
    """What an opened input holds, after trimming and rotation.

    Attributes:
        kind: "video" (a container), "image" (one picture file) or "sequence" (folder of images).
        path: the file or folder.
        width, height: display size, i.e. after the rotation below is applied.
        frame_count: frames in the selection; from the container index when it has one and
            nothing is trimmed, else counted by a demux pass (no decoding). None if unknown.
        fps: average frame rate (sequences and images: the rate given at open, default 25).
        time_base: unit of ``Frame.pts``.
        bit_depth: bits per component of the decoded pixel format (8, 10, 12, 16).
        has_alpha: frames carry a fourth (alpha) channel.
        rotation: counter-clockwise degrees (0, 90, 180, 270) the decoder output is turned by for
            display, from the display matrix; frames are already turned.
        color: colour tags of the source (images: usually empty).
        has_audio, has_subtitles: the container holds such streams (copied by the writer).
        start_time: seconds into the source where the selection starts.
        end_time: seconds where the selection ends (exclusive), None for "to the end".
        chroma: "4:2:0", "4:2:2" or "4:4:4": chroma subsampling of a Y'CbCr source (4:1:1 and
            4:1:0 count as 4:2:0, 4:4:0 as 4:2:2); None for RGB, grey and palette sources.
        gray: the source is grey (a grey pixel format); frames are still RGB(A).
    """

    kind: MediaKind
    path: Path
    width: int
    height: int
    frame_count: int | None
    fps: Fraction
    time_base: Fraction
    bit_depth: int
    has_alpha: bool
    rotation: int
    color: ColorInfo
    has_audio: bool
    has_subtitles: bool
    start_time: float = 0.0
    end_time: float | None = None
    chroma: str | None = None
    gray: bool = False

    @property
    def channels(self) -> int:
        """3 (RGB) or 4 (RGBA)."""
        return 4 if self.has_alpha else 3


@dataclass(frozen=True)
class Frame:
    """One decoded frame.

    Attributes:
        image: float32 (h, w, c) in [0, 1], c = 3 (RGB) or 4 (RGBA).
        index: position in the selection, from 0.
        pts: presentation timestamp in ``time_base`` units, exactly as stored in the source.
        time_base: seconds per ``pts`` unit.
    """

    image: np.ndarray
    index: int
    pts: int
    time_base: Fraction

    @property
    def time(self) -> float:
        """Presentation time in seconds."""
        return float(self.pts * self.time_base)
