"""File jobs: which inputs, which outputs, and restoring one file into another safely.

Inputs are files, folders (each media file inside is one job; ``sequence=True`` makes a folder of
images one clip) and glob patterns. Outputs never replace an input nor an existing file unless
asked, and are written under a temporary name and renamed when complete.
"""

from __future__ import annotations

import glob
import logging
import os
import re
import shutil
import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path

import numpy as np

from seedvr2.errors import InputError, OutOfMemory, OutputError, RankLost, SeedVR2Error
from seedvr2.media import (
    IMAGE_EXTENSIONS,
    VIDEO_EXTENSIONS,
    MediaInfo,
    MediaSource,
    MediaWriter,
    detect_scene_cuts,
    image_files,
    open_media,
)
from seedvr2.media.atomic import MANIFEST, claimed

from .progress import Cancelled
from .restorer import BatchOutput, Restorer, StreamCursor
from .resume import SEGMENT_FRAMES, WorkFolder, dequantize, quantize
from .storage import check_free_space, render_key

log = logging.getLogger(__name__)

VIDEO_OUTPUTS = (".mp4", ".mkv", ".mov", ".webm", ".gif")
CONTAINER_FOR_CODEC = {
    "h264": ".mp4",
    "h265": ".mp4",
    "ffv1": ".mkv",
    "prores": ".mov",
    "vp9": ".webm",
    "gif": ".gif",
}


_CLOCK = re.compile(r"(?:(?:(\d+):)?(\d+):)?(\d+(?:\.\d*)?|\.\d+)")


def parse_time(text: str, option: str) -> float:
    """Seconds from ``12.5``, ``mm:ss(.ms)`` or ``hh:mm:ss(.ms)``; ``option`` names it in errors."""
    match = _CLOCK.fullmatch(text.strip())
    if match is None:
        raise InputError(f"{option} {text!r} is not a time; use seconds (12.5), mm:ss or hh:mm:ss.ms")
    hours, minutes, seconds = (float(part or 0) for part in match.groups())
    if (match[1] is not None and minutes >= 60) or (match[2] is not None and seconds >= 60):
        raise InputError(f"{option} {text!r}: minutes and seconds after a colon must be below 60")
    return hours * 3600 + minutes * 60 + seconds


@dataclass(frozen=True)
class InputSelection:
    """What to read from each input."""

    start: float = 0.0  # seconds skipped at the start
    duration: float | None = None  # seconds kept from ``start``
    max_frames: int | None = None  # frames kept at most
    sequence_fps: float | None = None  # frame rate of image sequences (default 25)
    sequence: bool = False  # a folder of images is one clip, not one job per image


@dataclass(frozen=True)
class OutputSettings:
    """How and where outputs are written."""

    codec: str = "h264"  # h264, h265, ffv1, prores
    crf: int | None = None
    preset: str | None = None
    pix_fmt: str | None = None  # default: per codec, 10-bit when the source is
    video_format: str | None = None  # .mp4, .mkv, .mov; default per codec
    image_format: str | None = None  # .png, .tiff, ...; default: the input's
    frames_folder: bool = False  # videos and sequences become folders of PNG frames
    suffix: str = "_seedvr2"  # added to names of outputs placed next to the inputs
    fps: float | None = None  # output frame rate override (frames are re-timed evenly)
    audio: bool = True  # copy audio and subtitle streams
    overwrite: bool = False
    skip_existing: bool = False  # resume: leave finished outputs alone
    resume: bool = True  # reuse the finished segments of an interrupted video render

    def __post_init__(self) -> None:
        if self.overwrite and self.skip_existing:
            raise InputError("--overwrite and --skip-existing contradict each other; pick one")
        if self.video_format is not None and self.video_format not in VIDEO_OUTPUTS:
            raise InputError(f"video format {self.video_format!r} is not one of {VIDEO_OUTPUTS}")
        if self.image_format is not None and self.image_format not in IMAGE_EXTENSIONS:
            raise InputError(
                f"image format {self.image_format!r} is not one of {sorted(IMAGE_EXTENSIONS)}"
            )
        if self.fps is not None and self.fps <= 0:
            raise InputError(f"--fps must be positive, got {self.fps}")


@dataclass(frozen=True)
class Job:
    """One input restored into one output."""

    source: Path
    output: Path


@dataclass
class JobResult:
    """How a job went."""

    job: Job
    status: str  # "done", "skipped", "failed"
    frames: int = 0  # frames written, those reused from an interrupted render included
    seconds: float = 0.0
    reused: int = 0  # frames taken from the saved segments of an interrupted render
    size: tuple[int, int] | None = None  # output (w, h)
    message: str = ""
    timings: dict[str, float] = field(default_factory=dict)

    @property
    def fps(self) -> float:
        return self.frames / self.seconds if self.seconds else 0.0


def _is_media(path: Path) -> bool:
    suffix = path.suffix.lower()
    return suffix in VIDEO_EXTENSIONS or suffix in IMAGE_EXTENSIONS


def _is_image_folder(path: Path) -> bool:
    return path.is_dir() and bool(image_files(path))


def _hidden(path: Path, base: Path) -> bool:
    return any(part.startswith(".") for part in path.relative_to(base).parts)


def _walk(folder: Path, recursive: bool, keep: Callable[[Path], bool]) -> list[Path]:
    """Media files in ``folder`` (and sub-folders when ``recursive``) that ``keep`` accepts.

    Hidden files and folders are left out; linked folders are listed, never entered.
    """
    found: list[Path] = []
    for parent, folders, files in os.walk(folder):  # does not follow symbolic links
        here = Path(parent)
        kept = [name for name in folders if not name.startswith(".") and keep(here / name)]
        folders[:] = sorted(kept) if recursive else []
        found += [
            here / name for name in files
            if not name.startswith(".") and _is_media(here / name) and keep(here / name)
        ]  # fmt: skip
    return sorted(found)


def _glob(spec: str) -> list[Path]:
    """Paths matching ``spec``; ``**`` spans sub-folders without entering linked folders."""
    if "**" not in spec:
        return sorted(Path(p) for p in glob.glob(spec))
    parts = Path(spec).expanduser().parts
    fixed = next(i for i, part in enumerate(parts) if glob.has_magic(part))
    anchor = Path(*parts[:fixed]) if fixed else Path()
    matches = anchor.glob(str(Path(*parts[fixed:])))  # pathlib's ** never follows links
    return sorted(p for p in matches if not _hidden(p, anchor))


def _not_an_output(output: Path | None, suffix: str) -> Callable[[Path], bool]:
    """Whether a path found in an input folder or pattern is not an output of this tool.

    Outputs are: anything inside the output folder ``output``, frames folders this tool wrote
    (they hold its manifest) and, with outputs beside their inputs, names ending in ``suffix``.
    """
    inside = None if output is None else output.resolve()

    def keep(path: Path) -> bool:
        if path.is_dir() and (path / MANIFEST).is_file():
            return False
        if inside is not None:
            return not path.resolve().is_relative_to(inside)
        return not (suffix and path.stem.endswith(suffix))

    return keep


def expand_inputs(
    specs: list[str],
    sequence: bool = False,
    recursive: bool = False,
    output: Path | None = None,
    suffix: str = "",
) -> list[tuple[Path, Path | None]]:
    """Inputs as ``(path, root)``: ``root`` is the folder given, for mirroring sub-folders.

    Folders and patterns never yield this tool's outputs (see :func:`_not_an_output`), so a
    re-run into a folder inside the input folder, or beside the inputs, does not restore its own
    earlier outputs; files named one by one are taken as given.

    Raises:
        InputError: a path that does not exist, a pattern or folder matching nothing.
    """
    keep = _not_an_output(output, suffix)
    found: list[tuple[Path, Path | None]] = []
    for spec in specs:
        path = Path(spec).expanduser()
        if not path.exists() and glob.has_magic(spec):
            media = [
                m for m in _glob(spec)
                if (_is_media(m) or (sequence and _is_image_folder(m))) and keep(m)
            ]  # fmt: skip
            if not media:
                raise InputError(f"{spec}: the pattern matches no video, image or image folder")
            found += [(m, None) for m in media]
        elif path.is_dir():
            if sequence:  # an empty folder is reported when it is opened
                found.append((path, None))
                continue
            media = _walk(path, recursive, keep)
            if not media:
                hint = "" if recursive else " (add --recursive to look into sub-folders)"
                raise InputError(f"{path}: folder holds no video or image files{hint}")
            found += [(m, path) for m in media]
        elif path.exists():
            found.append((path, None))
        else:
            raise InputError(f"{spec}: no such file or folder")
    return found


def _output_suffix(source: Path, settings: OutputSettings) -> str:
    """Extension of the output of ``source`` ("" for a frames folder)."""
    is_image = source.is_file() and source.suffix.lower() in IMAGE_EXTENSIONS
    if is_image:
        return settings.image_format or source.suffix.lower()
    if settings.frames_folder or source.is_dir():
        return ""
    return settings.video_format or CONTAINER_FOR_CODEC.get(settings.codec, ".mp4")


def plan_jobs(
    inputs: list[str],
    output: str | None,
    settings: OutputSettings,
    sequence: bool = False,
    recursive: bool = False,
) -> list[Job]:
    """Pair every input with its output path.

    ``output`` is a file (one input; its extension picks the format), a folder (outputs keep
    the input names, sub-folders mirrored), or None (outputs next to inputs with the suffix).
    """
    target = None if output is None else Path(output).expanduser()
    folders = [Path(i).expanduser().resolve() for i in inputs if Path(i).expanduser().is_dir()]
    if target is not None and target.resolve() in folders:
        raise InputError(
            f"-o {output} is an input folder; outputs would mix with the inputs. Choose another "
            "folder, or leave out -o to write each output beside its input with --suffix"
        )
    sources = expand_inputs(inputs, sequence, recursive, target, settings.suffix)
    # One input and a target that is not an existing folder: the target is the output itself
    # when it has an extension, or when the output is a frames folder anyway. A frames folder
    # this tool wrote is that output again (a re-run writes where it wrote).
    single = (
        target is not None
        and len(sources) == 1
        and (not target.is_dir() or (target / MANIFEST).is_file())
        and (target.suffix != "" or _output_suffix(sources[0][0], settings) == "")
    )
    if target is not None and target.suffix and not target.is_dir() and len(sources) > 1:
        raise InputError(
            f"-o {output} names one file but there are {len(sources)} inputs; give a folder"
        )
    jobs: list[Job] = []
    for source, root in sources:
        if single:
            destination = target
        elif target is None:
            name = source.stem + settings.suffix + _output_suffix(source, settings)
            destination = source.with_name(name)
        else:
            relative = source.relative_to(root).parent if root is not None else Path()
            destination = target / relative / (source.stem + _output_suffix(source, settings))
        jobs.append(Job(source, destination))
    _check_outputs(jobs)
    return jobs


def _check_outputs(jobs: list[Job]) -> None:
    """Refuse outputs that would replace an input, hold one, or be written twice."""
    sources = {job.source.resolve(): job.source for job in jobs}
    seen: dict[Path, Path] = {}
    for job in jobs:
        output = job.output.resolve()
        if output in sources:
            raise InputError(
                f"{job.source}: the output {job.output} would replace the input "
                f"{sources[output]}; choose another -o"
            )
        holding = next((s for r, s in sources.items() if r.is_relative_to(output)), None)
        if holding is not None:
            raise InputError(
                f"{job.source}: the output {job.output} is a folder holding the input "
                f"{holding}; choose another -o"
            )
        if output in seen:
            raise InputError(
                f"{seen[output]} and {job.source} would both be written to {job.output}; "
                "give them separate output folders or rename one"
            )
        seen[output] = job.source


def open_input(job: Job, selection: InputSelection) -> MediaSource:
    """Open a job's input with the selected trim."""
    return open_media(
        job.source,
        start=selection.start,
        duration=selection.duration,
        max_frames=selection.max_frames,
        fps=selection.sequence_fps,
    )


def frame_count(source: MediaSource) -> int:
    """Frames of the selection, counted by decoding when the container does not say."""
    count = source.info.frame_count
    if count is None:
        count = sum(1 for _ in source.frames())
    if count == 0:
        raise InputError(f"{source.info.path}: holds no video frames")
    return count


def _writer(job: Job, info: MediaInfo, settings: OutputSettings) -> MediaWriter:
    options: dict[str, object] = {"overwrite": settings.overwrite}
    if job.output.suffix.lower() in VIDEO_OUTPUTS:
        options |= {"codec": settings.codec, "crf": settings.crf, "preset": settings.preset,
                    "pix_fmt": settings.pix_fmt}  # fmt: skip
        if not settings.audio:
            options["copy_streams_from"] = None
    if settings.fps is not None:
        fps = Fraction(settings.fps).limit_denominator(1_000_000)
        options |= {"fps": fps, "time_base": 1 / fps}
    return MediaWriter.for_source(job.output, info, **options)


def restore_file(
    restorer: Restorer,
    job: Job,
    selection: InputSelection | None = None,
    settings: OutputSettings | None = None,
    on_frame: Callable[[int], None] | None = None,
    on_start: Callable[[Job, int], None] | None = None,
    on_resume: Callable[[Job, int, int], None] | None = None,
) -> JobResult:
    """Restore one input file into its output.

    ``on_start(job, frames)`` before the first frame, ``on_frame(n)`` after each written frame,
    ``on_resume(job, frame, frames)`` when an interrupted render resumes at ``frame``.

    A video output is rendered in segments kept in a work folder until it is complete, so an
    interrupted render resumes where it stopped (``settings.resume``, see :mod:`.resume`).

    Raises:
        SeedVR2Error: unreadable input or unwritable output; nothing is left half-written.
        OutOfMemory: the job cannot fit (refused before any work) or memory ran out.
        Cancelled: Ctrl-C or :meth:`Restorer.cancel`; says how many frames are kept for a rerun.
    """
    selection = selection or InputSelection()
    settings = settings or OutputSettings()
    _check_outputs([job])
    if settings.skip_existing and job.output.exists():
        return JobResult(job, "skipped", message="output exists")
    if job.output.exists() and not settings.overwrite:
        raise OutputError(f"{job.output} exists; pass --overwrite to replace it or --skip-existing")
    with claimed(job.output):
        return _restore_claimed(restorer, job, selection, settings, on_frame, on_start, on_resume)


def _restore_claimed(
    restorer: Restorer,
    job: Job,
    selection: InputSelection,
    settings: OutputSettings,
    on_frame: Callable[[int], None] | None,
    on_start: Callable[[Job, int], None] | None,
    on_resume: Callable[[Job, int, int], None] | None,
) -> JobResult:
    """:func:`restore_file` while the output is claimed by this process."""
    began = time.perf_counter()
    phases = restorer.phase_totals()
    source = open_input(job, selection)
    count = frame_count(source)
    restorer.check_memory((source.info.height, source.info.width), count, str(job.source))
    cuts = detect_scene_cuts(f.image for f in source.frames()) if restorer.options.scene_cuts else []
    plan = restorer.plan_size((source.info.height, source.info.width))
    work = None
    if job.output.suffix in VIDEO_OUTPUTS:
        work = WorkFolder.for_render(job.output, render_key(restorer, job.source, selection))
        for stale in work.stale():  # earlier renders of this output with other inputs or settings
            shutil.rmtree(stale, ignore_errors=True)
        if not settings.resume:
            work.remove()
    shape = (*plan.output, source.info.channels)
    check_free_space(job.output, shape, count, settings.codec, work)
    if on_start is not None:
        on_start(job, count)
    render = _Render(_writer(job, source.info, settings), settings.fps is None, on_frame)
    try:
        with render.writer:
            cursor = None
            if work is not None:
                layout = restorer.batch_outputs(count, cuts)
                cursor = render.reuse(work, layout, shape)
                if cursor is not None and on_resume is not None:
                    on_resume(job, render.written, count)
            stamps: deque[int] = deque()

            def frames() -> Iterator[np.ndarray]:
                for frame in source.frames():
                    if frame.index >= render.written:  # outputs of earlier frames are reused
                        stamps.append(frame.pts)
                    yield frame.image

            for part in restorer.stream_batches(frames(), count, cuts, cursor):
                render.add(part.frames, [stamps.popleft() for _ in part.frames], part.cursor, work)
            closing = time.perf_counter()
    except OutOfMemory as error:  # the restorer's, any kind of device
        kept = " (finished segments are kept: the same command resumes)" if work else ""
        raise OutOfMemory(f"{job.source}: {error}{kept}") from None
    except KeyboardInterrupt:  # Ctrl-C or Restorer.cancel(): the saved segments stay
        raise Cancelled(f"{job.source}: interrupted", kept=render.kept) from None
    render.write_seconds += time.perf_counter() - closing  # the final encode and rename
    if work is not None:
        work.remove()
    timings = {k: v - phases.get(k, 0.0) for k, v in restorer.phase_totals().items()}
    timings["write"] = render.write_seconds
    return JobResult(job, "done", render.written, time.perf_counter() - began, size=render.size,
                     reused=render.reused, timings=timings)  # fmt: skip


class _Render:
    """Frames going to the writer; with a work folder, also into segments as batches finish."""

    def __init__(
        self, writer: MediaWriter, timed: bool, on_frame: Callable[[int], None] | None
    ) -> None:
        self.writer, self.timed, self.on_frame = writer, timed, on_frame
        self.written = 0
        self.reused = 0  # frames written from saved segments
        self.kept = 0  # frames in saved segments, for a rerun
        self.size: tuple[int, int] | None = None  # output (w, h)
        self.write_seconds = 0.0
        self._codes: list[np.ndarray] = []  # (H, W, c) uint16 frames of the unsaved segment
        self._pts: list[int] = []
        self._first = 0  # batch the unsaved segment starts at

    def _write(self, image: np.ndarray, pts: int) -> None:  # (H, W, c) float32
        began = time.perf_counter()
        self.writer.write(image, pts if self.timed else None)
        self.write_seconds += time.perf_counter() - began
        self.written += 1
        self.size = (image.shape[1], image.shape[0])
        if self.on_frame is not None:
            self.on_frame(1)

    def reuse(
        self, work: WorkFolder, layout: list[BatchOutput], shape: tuple[int, int, int]
    ) -> StreamCursor | None:
        """Write the frames of the finished segments that fit the render; the cursor after them."""
        cursor = None
        for segment in work.segments(layout, shape):
            for codes, pts in zip(segment.frames, segment.pts):
                self._write(dequantize(codes), int(pts))
            cursor = segment.cursor
        self.reused = self.kept = self.written
        if cursor is not None:
            log.info("resuming at frame %d of %s", self.written, work.path)
        self._first = 0 if cursor is None else cursor.next_batch
        return cursor

    def add(
        self, images: list[np.ndarray], stamps: list[int], cursor: StreamCursor, work: WorkFolder | None
    ) -> None:
        """Write one batch's frames; close a segment when it holds enough of them."""
        for image, pts in zip(images, stamps):
            if work is None:
                self._write(image, pts)
                continue
            codes = quantize(image)
            self._write(dequantize(codes), pts)
            self._codes.append(codes)
            self._pts.append(pts)
        if work is not None and len(self._codes) >= SEGMENT_FRAMES:
            try:
                work.save(self._first, self._codes, self._pts, cursor)
                self.kept += len(self._codes)
            except OSError as error:
                raise OutputError(
                    f"{work.path}: cannot save restored frames ({error.strerror or error}); "
                    "free some space or choose another output folder, then run the same command"
                ) from None
            self._codes, self._pts, self._first = [], [], cursor.next_batch


def run_jobs(
    restorer: Restorer,
    jobs: list[Job],
    selection: InputSelection | None = None,
    settings: OutputSettings | None = None,
    on_frame: Callable[[int], None] | None = None,
    on_start: Callable[[Job, int], None] | None = None,
    on_resume: Callable[[Job, int, int], None] | None = None,
) -> list[JobResult]:
    """Restore every job with one loaded model; a failing input does not stop the others (Ctrl-C
    and :class:`~.progress.Cancelled` stop them all). The callbacks are :func:`restore_file`'s."""
    results = []
    for job in jobs:
        try:
            results.append(restore_file(restorer, job, selection, settings, on_frame, on_start,
                                        on_resume))  # fmt: skip
        except RankLost:  # the run itself is over
            raise
        except SeedVR2Error as error:
            results.append(JobResult(job, "failed", message=str(error)))
        except Exception as error:  # a bug or an unforeseen failure: the other files go on
            log.info("%s failed", job.source, exc_info=True)
            message = f"unexpected {type(error).__name__}: {error} (run with -v for details)"
            results.append(JobResult(job, "failed", message=message))
    return results
