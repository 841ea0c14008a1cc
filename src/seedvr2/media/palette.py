"""Float frames to 256-colour palette frames (GIF), with FFmpeg's palettegen/paletteuse filters.

Each frame gets its own palette (``stats_mode=single``, ``new=1``), so colours follow the scene;
ordered (Bayer) dithering keeps the dither pattern still from frame to frame. Alpha becomes on/off
(FFmpeg's threshold, 128 of 255).
"""

from __future__ import annotations

from fractions import Fraction

import av
import numpy as np

from .colorspace import quantize


class PaletteQuantizer:
    """Turns float (h, w, 3|4) frames into pal8 frames; built for one size and channel count."""

    def __init__(self, time_base: Fraction):
        self._time_base = time_base
        self._graph: av.filter.Graph | None = None

    def _build(self, image: np.ndarray) -> None:
        height, width, channels = image.shape
        graph = av.filter.Graph()
        source = graph.add_buffer(
            width=width, height=height, format="rgba" if channels == 4 else "rgb24",
            time_base=self._time_base,
        )  # fmt: skip
        split = graph.add("split")
        palette = graph.add("palettegen", "stats_mode=single:reserve_transparent=1")
        use = graph.add("paletteuse", "new=1:dither=bayer:bayer_scale=3")
        source.link_to(split)
        split.link_to(use, 0, 0)
        split.link_to(palette, 1, 0)
        palette.link_to(use, 0, 1)
        use.link_to(graph.add("buffersink"))
        graph.configure()
        self._graph = graph

    def frames(self, image: np.ndarray | None, pts: int | None) -> list[av.VideoFrame]:
        """The pal8 frames ready after adding ``image`` (float, in [0, 1]) at ``pts``.

        ``image`` None flushes: the frames still held, at the end of the video.
        """
        if image is None:
            if self._graph is None:
                return []
            self._graph.push(None)
        else:
            if self._graph is None:
                self._build(image)
            channels = image.shape[-1]
            frame = av.VideoFrame.from_ndarray(
                quantize(image, 8), format="rgba" if channels == 4 else "rgb24"
            )
            frame.pts, frame.time_base = pts, self._time_base
            self._graph.push(frame)
        ready = []
        while True:
            try:
                ready.append(self._graph.pull())
            except (av.error.BlockingIOError, av.error.EOFError):
                return ready
