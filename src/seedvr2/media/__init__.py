"""Media: read videos, images and image folders as float frames; write them back safely.

Knows nothing of models. Frames are float32 (h, w, 3|4) arrays in [0, 1] with their exact source
timestamps; outputs are written atomically, keep audio/subtitles, colour tags and 10-bit values.
"""

from .colorspace import quantize
from .encode import VIDEO_CODECS, VideoCodec
from .reader import DEFAULT_SEQUENCE_FPS, MediaSource, image_files, open_media, read_frames
from .scenes import detect_scene_cuts
from .types import IMAGE_EXTENSIONS, VIDEO_EXTENSIONS, ColorInfo, Frame, MediaInfo
from .writer import MediaWriter

__all__ = [
    "DEFAULT_SEQUENCE_FPS",
    "IMAGE_EXTENSIONS",
    "VIDEO_CODECS",
    "VIDEO_EXTENSIONS",
    "ColorInfo",
    "Frame",
    "MediaInfo",
    "MediaSource",
    "MediaWriter",
    "VideoCodec",
    "detect_scene_cuts",
    "image_files",
    "open_media",
    "quantize",
    "read_frames",
]
