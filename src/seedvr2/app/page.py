"""The Gradio page and the ``/restore`` API over :mod:`.runner` (Gradio is imported here only)."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import gradio as gr

from seedvr2.errors import SeedVR2Error

from . import runner
from .models import ModelPool
from .uploads import Limits
from .work import Cancelled, StopSwitch, job_folder

log = logging.getLogger(__name__)

SIZES = {  # page choice -> (scale, resolution)
    "same size (1x)": (1.0, None), "2x": (2.0, None), "3x": (3.0, None), "4x": (4.0, None),
    "720p (short side 720 px)": (None, 720), "1080p (short side 1080 px)": (None, 1080),
    "1440p (short side 1440 px)": (None, 1440), "4K (short side 2160 px)": (None, 2160),
}  # fmt: skip
COLORS = {"the model's (default)": None, "wavelet": "wavelet", "adain": "adain", "lab": "lab",
          "none": "none"}  # fmt: skip
QUALITY = {"standard": 0, "best (larger file)": -6, "smaller file": 6}  # crf offsets
DEFAULT_CRF = {"h264": 18, "h265": 20, "vp9": 30}
INTRO = """# SeedVR2: restore and upscale videos and pictures
Drop a video, a picture or several files below, choose the size, press **Restore**. The plan
says what will happen before you start; the comparison and the download appear when it is done.
"""


class Page:
    """The page's event handlers; one instance per server, shared by all visitors."""

    def __init__(self, pool: ModelPool, limits: Limits, root: Path) -> None:
        self.pool, self.limits, self.root = pool, limits, root
        self.stops = StopSwitch()

    # -- settings --------------------------------------------------------------------------------

    def request(
        self, model: str, size: str, color: str, codec: str, quality: str, strength: float = 1.0
    ) -> runner.Request:
        """The page's choices as a :class:`runner.Request` (choices outside the lists refused)."""
        scale, resolution = SIZES.get(size, (None, None))
        crf = DEFAULT_CRF[codec] + QUALITY.get(quality, 0) if codec in DEFAULT_CRF else None
        return runner.Request(self.pool.choice(model).label, scale, resolution,
                              COLORS.get(color, color), codec, crf, float(strength))  # fmt: skip

    @staticmethod
    def _files(paths: list[str] | None) -> list[tuple[Path, str]]:
        return [(Path(path), Path(path).name) for path in paths or []]

    def plan(self, paths: list[str] | None, *choices: Any) -> str:
        """The plan line(s) shown before starting."""
        if not paths:
            return "Drop a video or a picture to see the plan."
        try:
            with job_folder(self.root) as folder:
                uploads = runner.stage(self._files(paths), folder, self.limits)
                return runner.plan(self.pool, self.request(*choices), uploads)
        except SeedVR2Error as error:
            return f"Cannot restore this: {error}"

    # -- running ---------------------------------------------------------------------------------

    def arm(self, request: gr.Request) -> str:
        """Before a run joins the queue: clear an earlier Cancel of this visitor."""
        self.stops.event(request.session_hash).clear()
        return "Waiting for its turn..."

    def cancel(self, request: gr.Request) -> str:
        """Stop this visitor's job after the batch being restored (or before it starts)."""
        self.stops.event(request.session_hash).set()
        return "Cancelling: the job stops after the batch being restored."

    def leave(self, request: gr.Request) -> None:
        """A visitor closed the page."""
        self.stops.forget(request.session_hash)

    def _run(
        self, paths: list[str] | None, choices: tuple[Any, ...] | runner.Request,
        session: str, progress: gr.Progress,
    ) -> Iterator[list[runner.Outcome] | SeedVR2Error]:  # fmt: skip
        """Restore in a job folder; yields the outcomes (or the error), then removes the folder
        once Gradio has copied the files it shows."""
        with job_folder(self.root) as folder:
            try:
                request = choices if isinstance(choices, runner.Request) else self.request(*choices)
                uploads = runner.stage(self._files(paths), folder, self.limits)

                def report(state: runner.Progress) -> None:
                    progress(state.fraction, desc=state.text())

                yield runner.restore(self.pool, request, uploads, self.stops.event(session), report)
            except SeedVR2Error as error:
                yield error
            except Exception as error:  # a bug: this job fails, the server goes on
                log.exception("job failed")
                yield SeedVR2Error(f"unexpected {type(error).__name__}: {error}")

    def run(
        self, paths: list[str] | None, model: str, size: str, color: str, codec: str,
        quality: str, strength: float, request: gr.Request,
        progress: gr.Progress = gr.Progress(),  # noqa: B008
    ) -> Iterator[tuple[Any, ...]]:  # fmt: skip
        """The Restore button: status, comparison, frame slider, videos, downloads, pairs."""
        choices = (model, size, color, codec, quality, strength)
        for outcome in self._run(paths, choices, request.session_hash, progress):
            if isinstance(outcome, SeedVR2Error):
                what = "Cancelled" if isinstance(outcome, Cancelled) else "Error"
                hidden = gr.update(visible=False)
                yield (f"**{what}:** {outcome}", None, hidden, None, None, None, None)
                continue
            first = outcome[0]
            video = first.upload.info.kind == "video"
            done = ", ".join(f"{o.upload.name} -> {o.output.name} ({o.result.frames} frame(s), "
                             f"{o.result.seconds:.1f} s)" for o in outcome)  # fmt: skip
            yield (
                f"**Done:** {done}. Download below.",
                self.pair(1, first.pairs),
                gr.update(visible=len(first.pairs) > 1, minimum=1, maximum=len(first.pairs),
                          value=1, step=1),
                str(first.upload.path) if video else None,
                str(first.output) if video else None,
                [str(o.output) for o in outcome],
                first.pairs,
            )  # fmt: skip

    @staticmethod
    def pair(position: int, pairs: list | None) -> Any:
        """The slider's pictures at ``position`` (1-based) of the compared frames."""
        if not pairs:
            return None
        index, before, after = pairs[min(max(int(position), 1), len(pairs)) - 1]
        return gr.update(value=(before, after), label=f"Before / after, frame {index + 1}")

    def api(
        self, input: str, scale: float | None = 2.0, resolution: int | None = None,
        model: str | None = None, color: str | None = None, codec: str = "h264",
        crf: int | None = None, strength: float = 1.0,
        progress: gr.Progress = gr.Progress(),  # noqa: B008
    ) -> Iterator[str]:  # fmt: skip
        """``/restore``: one file in, the restored file out (settings as the CLI's options)."""
        try:
            request = runner.Request(
                model or next(iter(self.pool.choices)), None if resolution else scale,
                resolution or None, color or None, codec, crf, 1.0 if strength is None else strength,
            )  # fmt: skip
        except SeedVR2Error as error:
            raise gr.Error(str(error), print_exception=False) from None
        for outcome in self._run([input], request, "api", progress):
            if isinstance(outcome, SeedVR2Error):
                raise gr.Error(str(outcome), print_exception=False)
            yield str(outcome[0].output)


def build(page: Page, concurrency: int = 1) -> gr.Blocks:
    """The page: inputs and settings, plan, Restore/Cancel, comparison and downloads."""
    labels = list(page.pool.choices)
    with gr.Blocks(title="SeedVR2", delete_cache=(600, 3600)) as demo:
        gr.Markdown(INTRO)
        with gr.Row():
            with gr.Column():
                files = gr.File(label="Videos or pictures", file_count="multiple", elem_id="inputs")
                model = gr.Dropdown(labels, value=labels[0], label="Model")
                size = gr.Dropdown(list(SIZES), value="2x", label="Output size")
                color = gr.Radio(list(COLORS), value="the model's (default)",
                                 label="Colour correction")  # fmt: skip
                strength = gr.Slider(0, 2, value=1, step=0.05, elem_id="strength",
                                     label="Strength: how much of the model's change to keep "
                                     "(below 1 tames over-sharpening)")  # fmt: skip
                with gr.Row():
                    codec = gr.Dropdown(list(runner.CODECS), value="h264", label="Video codec")
                    quality = gr.Radio(list(QUALITY), value="standard", label="Video quality")
                plan = gr.Textbox(label="Plan", interactive=False, lines=2, elem_id="plan")
                with gr.Row():
                    start = gr.Button("Restore", variant="primary", elem_id="restore")
                    stop = gr.Button("Cancel", variant="stop", elem_id="cancel")
            with gr.Column():
                status = gr.Markdown(elem_id="status")
                compare = gr.ImageSlider(label="Before / after", elem_id="compare", type="numpy")
                frame = gr.Slider(label="Frame", visible=False, elem_id="frame")
                with gr.Row():
                    before = gr.Video(label="Before", elem_id="before")
                    after = gr.Video(label="After", elem_id="after")
                download = gr.File(label="Download", elem_id="download")
        pairs = gr.State()
        settings = [model, size, color, codec, quality, strength]
        gr.on([files.change, *(c.change for c in settings)], page.plan, [files, *settings], plan,
              api_visibility="private", concurrency_limit=2, concurrency_id="plan")  # fmt: skip
        start.click(page.arm, None, status, queue=False, api_visibility="private").then(
            page.run, [files, *settings], [status, compare, frame, before, after, download, pairs],
            concurrency_id="gpu", concurrency_limit=concurrency, api_visibility="private",
            show_progress_on=[status],
        )  # fmt: skip
        stop.click(page.cancel, None, status, queue=False, api_visibility="private")
        frame.change(page.pair, [frame, pairs], compare, queue=False, api_visibility="private")
        demo.unload(page.leave)
        _api(page, concurrency)
    return demo


def _api(page: Page, concurrency: int) -> None:
    """The hidden components of the ``/restore`` endpoint."""
    with gr.Group(visible=False):
        inputs = [
            gr.File(label="input"), gr.Number(label="scale", value=2.0),
            gr.Number(label="resolution", value=None, precision=0),
            gr.Textbox(label="model", value=None), gr.Textbox(label="color", value=None),
            gr.Textbox(label="codec", value="h264"), gr.Number(label="crf", value=None, precision=0),
            gr.Number(label="strength", value=1.0),
        ]  # fmt: skip
        gr.Button().click(page.api, inputs, gr.File(label="output"), api_name="restore",
                          concurrency_id="gpu", concurrency_limit=concurrency)  # fmt: skip
