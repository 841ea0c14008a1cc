"""Command line: ``seedvr2 restore | info | download | train | export | convert | eval | serve``. Parses arguments, calls the API.

Errors a user can fix print as one line (``seedvr2: error: ...``) with exit code 1; argument
errors exit with 2; anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import math
import os
import re
import sys
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, NoReturn

from seedvr2 import __version__
from seedvr2.errors import SeedVR2Error
from seedvr2.spelling import command_line

# DiTConfig's colour correction names (models.dit.config), spelled here so that parsing the
# command line imports no torch; tests/test_cli_arguments.py checks that the two agree.
COLOR_CORRECTIONS = ("wavelet", "adain", "lab", "none")

if TYPE_CHECKING:  # the pipeline (and torch) is imported when a command runs, not for --help
    from seedvr2.pipeline import InputSelection, OutputSettings, RestoreOptions, RuntimeOptions
    from seedvr2.pipeline.memory import ModelFacts

RESTORE_EXAMPLES = """examples:
  seedvr2 restore clip.mp4 -o clip_2x.mp4 --scale 2
  seedvr2 restore old_films/ -o restored/ --resolution 1080 --model 3b --skip-existing
  seedvr2 restore "shots/*.mov" -o out/ --codec ffv1 --batch-size 33 --scene-cuts
  seedvr2 restore photo.png -o photo_4x.png --scale 4 --decode-tile 512
  seedvr2 restore clip.mp4 -o out.mp4 --resolution 720 --dry-run
"""


def _number(kind: type[int] | type[float], low: float | None = None, *, above: bool = False,
            high: float | None = None) -> Callable[[str], float]:  # fmt: skip
    """An argparse ``type``: a finite ``kind`` from ``low`` (or ``above`` it) up to ``high``.

    A value outside is a usage error naming the flag (``argument --scale: must be above 0``).
    """

    def parse(text: str) -> float:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"{text!r} is not {'a whole number' if kind is int else 'a number'}"
            ) from None
        if not math.isfinite(value):
            raise argparse.ArgumentTypeError(f"must be a finite number, got {text}")
        if low is not None and (value <= low if above else value < low):
            raise argparse.ArgumentTypeError(f"must be {'above' if above else 'at least'} "
                                             f"{kind(low)}, got {text}")  # fmt: skip
        if high is not None and value > high:
            raise argparse.ArgumentTypeError(f"must be at most {kind(high)}, got {text}")
        return value

    parse.__name__ = kind.__name__  # argparse names the type in its "invalid ... value" errors
    return parse


COUNT = _number(int, 0)  # frames, pixels or blocks, 0 allowed
POSITIVE = _number(int, 1)
STRENGTH = _number(float, 0, high=2)  # RestoreOptions.strength
SIDE = _number(int, 16)  # output sides: the networks see multiples of 16
SEED = _number(int, -(2**63), high=2**63 - 1)  # torch seeds; + a frame index stays below 2**64


def _restore_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "restore",
        help="restore or upscale videos, images and image folders",
        description="Restore or upscale videos, images and image folders with SeedVR2.",
        epilog=RESTORE_EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("inputs", nargs="+", metavar="INPUT", help="files, folders or glob patterns")
    p.add_argument("-o", "--output", help="output file (one input) or folder; default: next to "
                   "each input with --suffix")  # fmt: skip
    g = p.add_argument_group("model")
    g.add_argument("-m", "--model", help="preset (3b, 7b, 7b-sharp), model folder, or Hugging Face "
                   "repo owner/name or hf://owner/name; default: the bundled small model")  # fmt: skip
    g.add_argument("--offline", action="store_true", help="never download; use the cache only")
    g.add_argument("--cache-dir", help="download cache (default: the Hugging Face cache)")
    g.add_argument("--lora", action="append", default=[], metavar="ADAPTER[:SCALE]",
                   help="LoRA adapter folder (seedvr2 export of a LoRA run) merged into the DiT "
                   "at SCALE (default 1); repeatable")  # fmt: skip
    g = p.add_argument_group("size")
    size = g.add_mutually_exclusive_group()
    size.add_argument("-r", "--resolution", type=SIDE, help="output short side in pixels")
    size.add_argument("-s", "--scale", type=_number(float, 0, above=True), help="output size = "
                      "input size x SCALE (default: 1, the input's size, without --resolution)")  # fmt: skip
    g.add_argument("--max-side", type=SIDE, help="cap on the output long side in pixels")
    g = p.add_argument_group("quality")
    g.add_argument("--color", choices=COLOR_CORRECTIONS, help="colour "
                   "correction (default: the model's; wavelet for the released models, none for "
                   "the bundled one)")  # fmt: skip
    g.add_argument("--seed", type=SEED, default=666, help="noise seed (default: %(default)s)")
    g = p.add_argument_group("frames and memory")
    g.add_argument("-b", "--batch-size", type=POSITIVE, default=21, help="frames per batch, 4n+1 "
                   "(more: steadier, more memory; default: %(default)s)")  # fmt: skip
    g.add_argument("--overlap", type=COUNT, default=4, help="frames cross-faded between batches "
                   "(default: %(default)s)")  # fmt: skip
    g.add_argument("--scene-cuts", action="store_true", help="start a batch at every shot change")
    g.add_argument("--prepend", type=COUNT, default=0, help="reversed frames added before the "
                   "first (then dropped) to steady the start (default: %(default)s)")  # fmt: skip
    g.add_argument("--encode-tile", type=POSITIVE, help="VAE encode tile edge in pixels")
    g.add_argument("--decode-tile", type=POSITIVE, help="VAE decode tile edge in output pixels")
    g.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N, mps (default: "
                   "%(default)s: CUDA, then MPS, then the CPU)")  # fmt: skip
    g.add_argument("--devices", help="several devices restoring batches in parallel, e.g. "
                   "cuda:0,cuda:1 (overrides --device)")  # fmt: skip
    g.add_argument("--dtype", default="auto", choices=["auto", "fp32", "bf16", "fp16"],
                   help="precision (default: %(default)s: bf16 or fp16 on GPUs, fp32 on the CPU)")
    g.add_argument("--offload", action="store_true", help="keep only the network in use on the "
                   "device")  # fmt: skip
    g.add_argument("--swap-blocks", type=COUNT, default=0, metavar="N", help="keep N DiT blocks "
                   "on the CPU, streaming each to the GPU when used (less memory, slower)")  # fmt: skip
    g.add_argument("--sequence-parallel", action="store_true", help="split each batch over the "
                   "processes of torchrun --nproc-per-node N -m seedvr2 restore ... (less memory "
                   "per process; rank 0 reads and writes)")  # fmt: skip
    g = p.add_argument_group("input selection")
    g.add_argument("--start", default="0", help="time to skip: seconds, mm:ss or hh:mm:ss.ms")
    g.add_argument("--duration", help="time to restore: seconds, mm:ss or hh:mm:ss.ms")
    g.add_argument("--frames", "--max-frames", dest="max_frames", type=POSITIVE, help="frames to "
                   "restore at most")  # fmt: skip
    g.add_argument("--sequence", action="store_true", help="a folder of images is one clip")
    g.add_argument("--sequence-fps", type=_number(float, 0, above=True), help="frame rate of "
                   "image sequences (default: 25)")  # fmt: skip
    g.add_argument("--recursive", action="store_true", help="look into sub-folders")
    g = p.add_argument_group("output")
    g.add_argument("--codec", default="h264",
                   choices=["h264", "h265", "ffv1", "prores", "vp9", "gif", "png"],
                   help="video codec (vp9: .webm, gif: .gif); png: a folder of PNG frames (as "
                   "--frames-folder; default: %(default)s)")  # fmt: skip
    g.add_argument("--crf", type=_number(int, 0, high=51), help="quality for h264/h265/vp9 "
                   "(lower: better; default 18/20/30)")  # fmt: skip
    g.add_argument("--preset", help="x264/x265 preset, e.g. slow")
    g.add_argument("--pix-fmt", help="encoder pixel format, e.g. yuv420p10le")
    g.add_argument("--format", help="output type for folders of inputs: mp4, mkv, mov, webm, gif (videos) "
                   "or png, tiff, jpg, webp (images)")  # fmt: skip
    g.add_argument("--frames-folder", action="store_true", help="write videos as PNG frames")
    g.add_argument("--suffix", default="_seedvr2", help="name suffix of outputs next to inputs "
                   "(default: %(default)s)")  # fmt: skip
    g.add_argument("--fps", type=_number(float, 0, above=True), help="output frame rate "
                   "(default: the source's)")  # fmt: skip
    g.add_argument("--no-audio", action="store_true", help="do not copy audio and subtitles")
    policy = g.add_mutually_exclusive_group()
    policy.add_argument("-y", "--overwrite", action="store_true", help="replace existing outputs")
    policy.add_argument("--skip-existing", action="store_true", help="leave finished outputs")
    g.add_argument("--no-resume", action="store_true", help="ignore the saved segments of an "
                   "interrupted render and start over")  # fmt: skip
    g = p.add_argument_group("cluster", "whole files of a folder, glob or list job spread over "
                             "machines; needs pip install 'seedvr2[cluster]'")  # fmt: skip
    g.add_argument("--cluster", choices=["ray"], help="restore on the workers of a Ray cluster, "
                   "one per GPU (or per --cpus-per-worker CPUs); inputs and outputs must be on a "
                   "filesystem every node mounts at the same path")  # fmt: skip
    g.add_argument("--ray-address", metavar="HOST:PORT", help="the running Ray cluster (default: "
                   "$RAY_ADDRESS, else a Ray started on this machine)")  # fmt: skip
    g.add_argument("--cpus-per-worker", type=POSITIVE, help="CPUs of each worker on machines "
                   "without GPUs (default: 4)")  # fmt: skip
    g = p.add_argument_group("run")
    g.add_argument("-n", "--dry-run", action="store_true", help="print the plan, restore nothing")
    g.add_argument("--report", help="write a JSON report of the run to this file")
    g.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    g = p.add_argument_group("advanced", "settings experts change; the defaults are SeedVR2's")
    g.add_argument("--steps", type=POSITIVE, default=1, help="sampling steps (default: "
                   "%(default)s, as SeedVR2)")  # fmt: skip
    g.add_argument("--cfg-scale", type=_number(float), default=1.0, help="guidance (default: "
                   "%(default)s, off, as SeedVR2)")  # fmt: skip
    g.add_argument("--cond-noise", type=_number(float, 0, high=1), default=0.0, help="noise on "
                   "the LQ latent, 0-1 (default: %(default)s)")  # fmt: skip
    g.add_argument("--strength", type=STRENGTH, default=1.0, help="how much of the model's "
                   "change to keep: 0 gives the resized input, 1 the model's output (default), "
                   "0.5-0.8 tames over-sharpening, up to 2 exaggerates the change")  # fmt: skip
    g.add_argument("--tile-overlap", type=COUNT, default=64, help="VAE tile overlap in pixels "
                   "(default: %(default)s)")  # fmt: skip
    g.add_argument("--temporal-chunk", type=COUNT, help="VAE frames per causal chunk (4n; 0: "
                   "all; default: the model's)")  # fmt: skip
    g.add_argument("--attention", default="auto", choices=["auto", "sdpa", "flash"],
                   help="attention kernel (default: %(default)s: flash-attn when installed)")
    g.add_argument("--compile", action="store_true", help="torch.compile the networks: a slow "
                   "first batch, faster ones after (GPU; needs a C++ compiler on the CPU)")  # fmt: skip
    g.add_argument("--no-memory-check", action="store_true", help="start jobs even when their "
                   "estimated memory peak exceeds the memory available")  # fmt: skip
    p.set_defaults(handler=_restore, parser=p)


@contextlib.contextmanager
def _usage(parser: argparse.ArgumentParser) -> Iterator[None]:
    """Turn the project's errors about arguments into argparse usage errors (exit code 2)."""
    try:
        yield
    except SeedVR2Error as error:
        parser.error(str(error))


def _format_choice(value: str | None) -> tuple[str | None, str | None]:
    """--format -> (video_format, image_format).

    Raises:
        InputError: a format that is neither a video container nor an image type.
    """
    from seedvr2.errors import InputError
    from seedvr2.media import IMAGE_EXTENSIONS
    from seedvr2.pipeline.jobs import VIDEO_OUTPUTS

    if value is None:
        return None, None
    suffix = "." + value.lower().lstrip(".")
    if suffix in VIDEO_OUTPUTS:
        return suffix, None
    if suffix in IMAGE_EXTENSIONS:
        return None, suffix
    known = ", ".join(s.lstrip(".") for s in (*VIDEO_OUTPUTS, *sorted(IMAGE_EXTENSIONS)))
    raise InputError(f"--format {value} is not one of {known}")


def _restore(args: argparse.Namespace) -> int:
    from seedvr2.pipeline import distributed
    from seedvr2.pipeline.memory import MemorySetup
    from seedvr2.pipeline.runtime import check_attention, resolve_device, resolve_dtype

    with _usage(args.parser):  # every argument, before any input is read or model loaded
        settings, selection, options, runtime = _restore_settings(args)
        cluster = _cluster_options(args)
    if cluster is not None and not args.dry_run:  # the workers resolve their devices
        return _restore_on_cluster(args, settings, selection, options, runtime, cluster)
    with _usage(args.parser):
        distributed.refuse_unsplit_launch(runtime.sequence_parallel)
        team = distributed.join(runtime.device) if runtime.sequence_parallel else None
        option = "--devices" if runtime.devices else "--device"
        devices = [resolve_device(name, option) for name in runtime.device_names]
        devices = devices if team is None else [team.device]
        setup = MemorySetup.of_runtime(runtime, devices[0], resolve_dtype(runtime.dtype, devices[0]))
        check_attention(runtime.attention, devices[0], setup.dtype)
    if team is not None and not team.leads:  # rank 0 reads, plans, writes and reports
        if not args.dry_run:
            _load_restorer(args, runtime, options).follow()
        team.close()
        return 0
    if args.dry_run:
        code = _dry_run(args, options, settings, selection, setup, devices[0])
        if team is not None:
            team.close()
        return code
    with distributed.leading(team):
        return _restore_jobs(args, settings, selection, options, runtime, setup, devices)


def _load_restorer(args, runtime, options):
    return _model_load(args, runtime, options).load()


def _model_load(args, runtime, options):
    from seedvr2.pipeline.loading import ModelLoad

    return ModelLoad(args.model, options, runtime, args.cache_dir, args.offline, tuple(args.lora))


def _cluster_options(args: argparse.Namespace):
    """The cluster settings of ``restore --cluster ray``, or None without ``--cluster``.

    Raises:
        InputError: a cluster flag without ``--cluster``.
    """
    from seedvr2.errors import InputError

    if args.cluster is None:
        if args.ray_address is not None or args.cpus_per_worker is not None:
            flag = "--ray-address" if args.ray_address is not None else "--cpus-per-worker"
            raise InputError(f"{flag} is a setting of cluster runs; add --cluster ray")
        return None
    from seedvr2.pipeline.cluster import ClusterOptions

    return ClusterOptions(args.ray_address, args.cpus_per_worker or ClusterOptions.cpus_per_worker)


def _restore_on_cluster(args, settings, selection, options, runtime, cluster) -> int:
    import shutil

    from seedvr2 import pipeline
    from seedvr2.console import ClusterLines
    from seedvr2.pipeline import cluster as ray_cluster

    jobs = pipeline.plan_jobs(args.inputs, args.output, settings, args.sequence, args.recursive)
    load = _model_load(args, runtime, options)
    folder = ray_cluster.summary_folder(jobs, args.output)
    try:
        run = ray_cluster.restore_on_cluster(jobs, load, selection, settings, cluster, folder,
                                             {"command": sys.argv},
                                             None if args.quiet else ClusterLines())  # fmt: skip
    except KeyboardInterrupt:
        print("seedvr2: interrupted; run the same command to finish what is missing (finished "
              "outputs are kept, unfinished videos resume from their segments)", file=sys.stderr)  # fmt: skip
        return 130
    for outcome in run.of("failed"):
        print(f"seedvr2: error: {outcome.result.message}", file=sys.stderr)
    print(run.line())
    if args.report:
        shutil.copyfile(run.summary, args.report)
    return 1 if run.of("failed") else 0


def _restore_jobs(args, settings, selection, options, runtime, setup, devices) -> int:
    from seedvr2 import pipeline
    from seedvr2.pipeline import planning, report

    jobs = pipeline.plan_jobs(args.inputs, args.output, settings, args.sequence, args.recursive)
    facts = _model_facts(args) if runtime.memory_check else None
    extra = {"command": sys.argv, "selection": selection, "output_settings": settings}
    refused = planning.refuse_all(jobs, options, selection, facts, setup, devices)
    if refused is not None:  # no job can start: the model is not loaded
        if args.report:
            report.write_report(args.report, report.build_report(None, refused, extra))
        return _summarise(refused)
    from seedvr2.console import RestoreBar, interrupts_cancel, messages_above_bar

    restorer = None
    display = RestoreBar(args.quiet, lambda job, frames: _planned_seconds(restorer, job, selection, frames))
    try:
        with messages_above_bar():
            with display.loading(args.model or "seedvr2-small (bundled)"):
                restorer = _load_restorer(args, runtime, options)
            restorer.on_progress = display.progress
            with interrupts_cancel(restorer):
                results = pipeline.run_jobs(restorer, jobs, selection, settings, display.frame,
                                            display.start, display.resumed)  # fmt: skip
    except KeyboardInterrupt as stop:
        display.close()
        print(_interrupted(getattr(stop, "kept", 0), len(display.started) - 1, args), file=sys.stderr)
        return 130
    finally:
        display.close()
    if args.report:
        report.write_report(args.report, report.build_report(restorer, results, extra))
    return _summarise(results)


def _restore_settings(
    args: argparse.Namespace,
) -> tuple[OutputSettings, InputSelection, RestoreOptions, RuntimeOptions]:
    """(OutputSettings, InputSelection, RestoreOptions, RuntimeOptions) of ``restore``'s arguments.

    Raises:
        SeedVR2Error: an argument, or a combination of them, that cannot be used.
    """
    from seedvr2 import pipeline
    from seedvr2.errors import InputError
    from seedvr2.media.encode import check_video_settings

    video_format, image_format = _format_choice(args.format)
    codec = "h264" if args.codec == "png" else args.codec
    check_video_settings(codec, args.pix_fmt, args.crf, args.preset)
    settings = pipeline.OutputSettings(
        codec=codec, crf=args.crf, preset=args.preset,
        pix_fmt=args.pix_fmt, video_format=video_format, image_format=image_format,
        frames_folder=args.frames_folder or args.codec == "png",
        suffix=args.suffix, fps=args.fps, audio=not args.no_audio, overwrite=args.overwrite,
        skip_existing=args.skip_existing, resume=not args.no_resume,
    )  # fmt: skip
    selection = pipeline.InputSelection(
        start=pipeline.parse_time(args.start, "--start"),
        duration=None if args.duration is None else pipeline.parse_time(args.duration, "--duration"),
        max_frames=args.max_frames,
        sequence_fps=args.sequence_fps, sequence=args.sequence,
    )  # fmt: skip
    if selection.duration == 0:
        raise InputError("--duration 0 keeps no frames; give a positive time")
    options = pipeline.RestoreOptions(
        resolution=args.resolution, scale=args.scale, max_side=args.max_side,
        batch_size=args.batch_size, overlap=args.overlap, scene_cuts=args.scene_cuts,
        prepend=args.prepend, color=args.color, seed=args.seed, steps=args.steps,
        cfg_scale=args.cfg_scale, cond_noise_scale=args.cond_noise, strength=args.strength,
        tiling=pipeline.VAETiling(
            encode_tile=args.encode_tile, decode_tile=args.decode_tile,
            overlap=args.tile_overlap, temporal_chunk=args.temporal_chunk,
        ),
    )  # fmt: skip
    runtime = pipeline.RuntimeOptions(
        device=args.device, dtype=args.dtype, offload=args.offload, attention=args.attention,
        devices=tuple(args.devices.split(",")) if args.devices else (),
        swap_blocks=args.swap_blocks, compile=args.compile, memory_check=not args.no_memory_check,
        sequence_parallel=args.sequence_parallel,
    )  # fmt: skip
    if args.report is not None:
        _check_report_path(Path(args.report))
    return settings, selection, options, runtime


def _check_report_path(path: Path) -> None:
    """A report is written at the end of a run: refuse a place it cannot go before the run."""
    from seedvr2.errors import InputError

    folder = path.parent
    if path.is_dir() or not folder.is_dir() or not os.access(folder, os.W_OK):
        raise InputError(f"--report {path}: cannot write a file there; give a file in an existing, "
                         "writable folder")  # fmt: skip


def _model_facts(args: argparse.Namespace) -> ModelFacts | None:
    """What the memory estimate needs of ``--model`` without loading it; None for a model not
    downloaded yet (its jobs are checked once it is loaded)."""
    from seedvr2.pipeline.memory import model_facts

    try:
        return model_facts(args.model, args.cache_dir)
    except SeedVR2Error:
        return None


def _dry_run(args, options, settings, selection, setup, device) -> int:
    from seedvr2 import pipeline
    from seedvr2.pipeline import estimate, memory, planning, runtime

    jobs = pipeline.plan_jobs(args.inputs, args.output, settings, args.sequence, args.recursive)
    available = runtime.available_memory_bytes(device)
    ranks = f", per process of {setup.ranks}" if setup.ranks > 1 else ""
    print(f"dry run: {len(jobs)} job(s) on {device} in {str(setup.dtype).removeprefix('torch.')}"
          f"{ranks}")  # fmt: skip
    try:
        facts = memory.model_facts(args.model, args.cache_dir)
        shape = estimate.model_shape(args.model, args.cache_dir)
    except SeedVR2Error as error:
        facts = shape = None
        print(f"no memory or time estimate: {error}")
    rate = estimate.device_rate(device, setup.dtype) * setup.ranks
    for job in jobs:
        plan = planning.plan_job(options, job, selection)
        peak, advice, seconds = None, None, None
        if facts is not None:
            peak = memory.estimate_peak_bytes(plan, options, facts, setup)
            if available is not None and peak > available:
                advice = memory.advice(plan, options, facts, setup, available)
            seconds = estimate.estimate_seconds(shape, options, plan.batches, plan.size.padded, rate)
        print(planning.describe(plan, peak, available, advice, seconds))
    return 0


def _planned_seconds(restorer, job, selection, frames: int) -> float | None:
    """The planner's time for a job, for the ETA shown before any work is measured."""
    from seedvr2.pipeline import jobs

    if restorer is None:
        return None
    info = jobs.open_input(job, selection).info
    return restorer.estimate_seconds((info.height, info.width), frames)


def _interrupted(kept: int, finished: int, args: argparse.Namespace) -> str:
    """The line printed after Ctrl-C: what is kept and how to resume."""
    again = "the same command"
    if finished > 0 and not (args.skip_existing or args.overwrite):
        again += " with --skip-existing"  # the finished outputs exist now
    return f"seedvr2: interrupted; run {again} to resume ({kept} frame(s) kept)"


def _outputs(done) -> str:
    names = [str(r.job.output) for r in done[:3]]
    return ", ".join(names) + (f" and {len(done) - 3} more" if len(done) > 3 else "")


def _summarise(results) -> int:
    done = [r for r in results if r.status == "done"]
    failed = [r for r in results if r.status == "failed"]
    skipped = [r for r in results if r.status == "skipped"]
    for result in failed:
        print(f"seedvr2: error: {result.message}", file=sys.stderr)
    frames = sum(r.frames - r.reused for r in done)  # restored in this run
    seconds = sum(r.seconds for r in done)
    rate = frames / seconds if seconds else 0.0
    target = f" -> {_outputs(done)}" if done else ""
    parts = [f"restored {len(done)} file(s){target}, {frames} frame(s) in {seconds:.1f} s "
             f"({rate:.2f} frames/s)"]  # fmt: skip
    reused = sum(r.reused for r in done)
    if reused:
        parts.append(f"{reused} frame(s) reused from the interrupted run")
    if skipped:
        parts.append(f"{len(skipped)} skipped (output exists)")
    if failed:
        parts.append(f"{len(failed)} failed")
    print("; ".join(parts))
    return 1 if failed else 0


def _info_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("info", help="say what a model or weights file is")
    p.add_argument("model", help="a weights file, a model folder, a preset or a repo id")
    p.add_argument("--offline", action="store_true", help="never download")
    p.set_defaults(handler=_info)


def _info(args: argparse.Namespace) -> int:
    from pathlib import Path

    from seedvr2.weights import load_state_dict_file, locate_model, state_dict_summary

    path = Path(args.model).expanduser()
    if path.is_file():
        print(f"{path}: {state_dict_summary(load_state_dict_file(path))}")
        return 0
    files = locate_model(args.model, offline=args.offline)
    print(f"model {files.origin}")
    for name in ("dit", "vae"):
        file = getattr(files, name)
        print(f"  {name:4} {file}: {state_dict_summary(load_state_dict_file(file))}")
    for name in ("pos_emb", "neg_emb"):
        print(f"  {name} {getattr(files, name) or '(none)'}")
    return 0


def _download_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("download", help="fetch a preset or Hugging Face repo into the cache and "
                       "verify it (for machines without a network: copy the cache over)")  # fmt: skip
    p.add_argument("model", metavar="PRESET|REPO", help="3b, 7b, 7b-sharp, owner/name or "
                   "hf://owner/name")  # fmt: skip
    p.add_argument("--cache-dir", help="download cache (default: the Hugging Face cache)")
    p.set_defaults(handler=_download)


def _download(args: argparse.Namespace) -> int:
    from pathlib import Path

    from seedvr2.weights.sources import download_model

    files = download_model(args.model, None if args.cache_dir is None else Path(args.cache_dir))
    print(f"model {files.origin}: downloaded and verified")
    for name in ("dit", "vae", "pos_emb", "neg_emb"):
        print(f"  {name:7} {getattr(files, name) or '(none)'}")
    return 0


def _train_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("train", help="train a stage from a YAML config (torchrun for many GPUs)")
    p.add_argument("config", help="configs/train/*.yaml")
    p.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="e.g. optim.lr=1e-4")
    p.add_argument("--dry-run", action="store_true", help="train nothing: print the per-GPU "
                   "memory estimate, the model and the settings, and what would fit")
    p.add_argument("--gpu-memory", type=_memory_amount, metavar="AMOUNT",
                   help="with --dry-run: compare with this much memory (e.g. 24GiB, 80GB) "
                   "instead of this machine's GPU")
    p.add_argument("--gpus", type=_number(int, 1), default=1, metavar="N",
                   help="with --dry-run: processes of the run (torchrun --nproc-per-node)")
    p.set_defaults(handler=_train)
    p = sub.add_parser("export", help="write a training checkpoint's weights as safetensors, or "
                       "a LoRA run's adapter as a PEFT folder")  # fmt: skip
    p.add_argument("checkpoint", help="a run folder or checkpoint file")
    p.add_argument("output", help="the .safetensors file to write (a LoRA run: the adapter "
                   "folder, for restore --lora)")  # fmt: skip
    p.add_argument("--network", help="which network (default: the EMA of the trained one)")
    p.add_argument("--color-correction", choices=COLOR_CORRECTIONS,
                   help="record this as the DiT's own colour correction, which restore applies "
                   "unless --color says otherwise (default: the one it trained with)")  # fmt: skip
    p.add_argument("-y", "--overwrite", action="store_true",
                   help="replace an existing output file; for an adapter folder, replace its "
                   "adapter files (nothing else in it is touched)")  # fmt: skip
    p.set_defaults(handler=_export)


_UNITS = {"gib": 2**30, "gb": 10**9, "mib": 2**20, "mb": 10**6}


def _memory_amount(text: str) -> int:
    """``24GiB``, ``80GB``, ``512MiB`` -> bytes."""
    match = re.fullmatch(r"\s*([0-9.]+)\s*([a-zA-Z]+)\s*", text)
    unit = _UNITS.get(match.group(2).lower()) if match else None
    try:
        value = float(match.group(1)) if unit else -1.0
    except ValueError:
        value = -1.0
    if value <= 0:
        raise argparse.ArgumentTypeError(f"{text!r} is not an amount like 24GiB, 80GB or 512MiB")
    return int(value * unit)


def _train(args: argparse.Namespace) -> int:
    from seedvr2 import train

    if args.dry_run:
        print(train.dry_run(args.config, args.overrides, args.gpu_memory, args.gpus))
        return 0
    checkpoint = train.run(args.config, args.overrides)
    if checkpoint is not None:
        print(f"latest checkpoint: {checkpoint}")
    return 0


def _export(args: argparse.Namespace) -> int:
    from seedvr2 import train

    written = train.export_weights(args.checkpoint, args.output, args.network, args.overwrite,
                                   args.color_correction)
    print(f"wrote {written}")
    return 0


def _convert_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("convert", help="re-save weights as fp16, bf16 or (scaled) fp8 safetensors")
    p.add_argument("input", help="a weights file (.safetensors, .gguf, .pth, ...)")
    p.add_argument("output", help="the .safetensors file to write (with OUTPUT.sha256 beside it)")
    p.add_argument("--dtype", required=True, choices=["fp16", "bf16", "fp8_e4m3", "fp8_e5m2"])
    p.add_argument("--scaled", action="store_true", help="fp8 with one scale per tensor")
    p.add_argument("-y", "--overwrite", action="store_true", help="replace an existing output")
    p.set_defaults(handler=_convert)


def _convert(args: argparse.Namespace) -> int:
    from seedvr2.weights.convert import convert_weights

    print(f"wrote {convert_weights(args.input, args.output, args.dtype, args.scaled, args.overwrite)}")
    return 0


def _eval_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("eval", help="benchmark models and baselines on clips (metric tables)")
    p.add_argument("inputs", nargs="+", help="ground-truth clips/images, or folders of them")
    p.add_argument("-o", "--output", required=True, help="folder for results.{md,csv,json}")
    p.add_argument("--model", action="append", help="model folder, preset or repo id; repeat to "
                   "compare several (default: the bundled model)")  # fmt: skip
    p.add_argument("--no-model", action="store_true", help="baselines only")
    p.add_argument("--lora", action="append", default=[], metavar="ADAPTER[:SCALE]",
                   help="also evaluate each model with this LoRA adapter (seedvr2 export's "
                   "folder), next to the model as is; repeat to compare several")
    p.add_argument("--strength", type=STRENGTH, action="append", default=[], help="also "
                   "evaluate each model at this --strength (see restore); repeat for several")
    p.add_argument("--scale", type=int, default=4, choices=[2, 4], help="up-scaling factor")
    p.add_argument("--degradation", help="degradation YAML for the LQ (default: bicubic down)")
    p.add_argument("--seed", type=int, default=0, help="seed of the LQ synthesis")
    p.add_argument("--frames", type=int, help="frames read per clip at most")
    p.add_argument("--no-reference", action="store_true", help="inputs are real LQ clips: "
                   "no-reference metrics only")  # fmt: skip
    p.add_argument("--metrics", help="comma-separated metric names (default: per mode)")
    p.add_argument("--plots", action="store_true", help="bar charts (needs matplotlib)")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N, mps")
    p.add_argument("-y", "--overwrite", action="store_true",
                   help="replace the results of an earlier eval in the output folder")
    p.set_defaults(handler=_eval)


def _eval(args: argparse.Namespace) -> int:
    from seedvr2.errors import InputError
    from seedvr2.eval import BenchmarkSettings, evaluate, to_markdown

    settings = BenchmarkSettings(
        scale=args.scale, degradation=args.degradation, seed=args.seed, max_frames=args.frames,
        reference=not args.no_reference,
        metrics=None if args.metrics is None else tuple(args.metrics.split(",")),
    )  # fmt: skip
    models = [] if args.no_model else (args.model or [None])
    if (args.lora or args.strength) and not models:
        raise InputError(f"{'--lora' if args.lora else '--strength'} applies to a model: drop "
                         "--no-model")
    result = evaluate(args.inputs, args.output, models, settings, device=args.device,
                      plots=args.plots, log=print, adapters=args.lora, overwrite=args.overwrite,
                      strengths=args.strength)
    print(to_markdown(result), end="")
    return 0


def _serve_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("serve", help="a web page (and HTTP API) to restore files in a browser",
                       description="Serve a web page to restore videos and pictures in a browser, "
                       "and its HTTP API (/restore). Needs the serve extra: pip install "
                       "'seedvr2[serve]'.")  # fmt: skip
    p.add_argument("-m", "--model", action="append", default=[], help="preset, model folder or "
                   "repo id offered on the page; repeat for several (the first is the default; "
                   "the bundled model and downloaded presets are offered too)")  # fmt: skip
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default: "
                   "%(default)s, this computer only; 0.0.0.0: the network, with --auth)")  # fmt: skip
    p.add_argument("--port", type=_number(int, 1, high=65535), default=7860,
                   help="port (default: %(default)s)")
    p.add_argument("--auth", metavar="USER:PASS", help="ask visitors for this user and password")
    p.add_argument("--max-upload-mb", type=_number(float, 0, above=True), default=500,
                   help="largest file accepted, in MB (default: %(default)s)")
    p.add_argument("--max-seconds", type=_number(float, 0, above=True), default=600,
                   help="longest clip accepted, in seconds (default: %(default)s)")
    p.add_argument("--concurrency", type=POSITIVE, default=1, help="jobs restoring at once; "
                   "others wait in a queue (default: %(default)s, one per GPU)")  # fmt: skip
    p.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N, mps")
    p.add_argument("--dtype", default="auto", choices=["auto", "fp32", "bf16", "fp16"])
    p.add_argument("--offload", action="store_true", help="keep only the network in use on the "
                   "device")  # fmt: skip
    p.add_argument("--offline", action="store_true", help="never download; use the cache only")
    p.add_argument("--cache-dir", help="download cache (default: the Hugging Face cache)")
    p.set_defaults(handler=_serve)


def _serve(args: argparse.Namespace) -> int:
    import importlib.util

    from seedvr2.errors import InputError

    if importlib.util.find_spec("gradio") is None:
        raise InputError("seedvr2 serve needs Gradio: pip install 'seedvr2[serve]'")
    from seedvr2.app import ServeOptions, serve

    options = ServeOptions(
        models=args.model, host=args.host, port=args.port, auth=args.auth,
        max_upload_mb=args.max_upload_mb, max_seconds=args.max_seconds,
        concurrency=args.concurrency, device=args.device, dtype=args.dtype, offload=args.offload,
        cache_dir=args.cache_dir, offline=args.offline,
    )  # fmt: skip
    if args.host not in ("127.0.0.1", "localhost", "::1") and args.auth is None:
        print(f"seedvr2: warning: serving on {args.host} without --auth: anyone who can reach "
              "this computer can use it", file=sys.stderr)  # fmt: skip
    serve(options)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="seedvr2", description="SeedVR2 one-step video restoration and upscaling."
    )
    parser.add_argument("--version", action="version", version=f"seedvr2 {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log details")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    _restore_parser(sub)
    _info_parser(sub)
    _download_parser(sub)
    _train_parser(sub)
    _convert_parser(sub)
    _eval_parser(sub)
    _serve_parser(sub)
    return parser


def entry() -> NoReturn:
    """The ``seedvr2`` program: :func:`main`, then exit; a process that used a process group
    (torchrun ranks, one-process DDP training) exits through
    :func:`~seedvr2.pipeline.distributed.exit_rank`. :func:`main` itself never ends the process
    (callers in the same process, such as tests, keep running)."""
    code = main()
    distributed = sys.modules.get("seedvr2.pipeline.distributed")  # groups are made through it
    if distributed is not None and distributed.used_a_group():
        distributed.exit_rank(code)
    sys.exit(code)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING, format="%(levelname)s: %(message)s"
    )
    try:
        with command_line():  # messages name flags
            return args.handler(args)
    except SeedVR2Error as error:
        with command_line():
            print(f"seedvr2: error: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("seedvr2: interrupted; unfinished outputs were removed", file=sys.stderr)
        return 130
