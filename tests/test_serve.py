"""`seedvr2 serve` end to end: a real server process, a real headless browser, the Python client."""

from __future__ import annotations

import re
from pathlib import Path

import av
import numpy as np
import pytest
from gradio_client import Client, handle_file
from playwright.sync_api import Page, expect, sync_playwright

from media_fixtures import pattern, write_video
from seedvr2.media import read_frames
from serve_support import Server, artefacts, chromium
from test_readme import EVERY_BLOCK, SERVER_URL

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


@pytest.fixture(scope="module")
def server(tiny_model: Path, tmp_path_factory: pytest.TempPathFactory):
    tmp = tmp_path_factory.mktemp("serve")
    running = Server(tmp, "--model", str(tiny_model), "--max-seconds", "10")
    yield running
    assert running.stop() == 0
    assert running.roots() == [], "the server left its temporary folder behind"


@pytest.fixture(scope="module")
def clips(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("clips")
    text = folder / "notes.mp4"
    text.write_text("not a film at all\n" * 50)
    return {
        "clip": write_video(folder / "clip.mp4", pattern(9, 32, 48), audio="aac",
                            subtitles="mov_text"),
        "long": write_video(folder / "long.mp4", pattern(105, 48, 64), fps=25),
        "text": text,
    }  # fmt: skip


def streams(path: Path) -> tuple[int, int, int, list[str]]:
    """(width, height, frames decoded, stream types) of a video file."""
    with av.open(str(path)) as container:
        video = container.streams.video[0]
        kinds = sorted(s.type for s in container.streams)
        frames = sum(1 for _ in container.decode(video))
        return video.width, video.height, frames, kinds


@pytest.fixture(scope="module")
def page(server: Server):
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium(), args=["--no-sandbox"])
        tab = browser.new_page(viewport={"width": 1280, "height": 900}, accept_downloads=True)
        tab.goto(server.url)
        yield tab
        browser.close()


def upload(page: Page, path: Path) -> None:
    """Replace the page's files by ``path``, as a person removing the last one first would."""
    clear = page.locator("#inputs button[aria-label=Clear]")
    if clear.count():
        clear.click()
    page.locator("#inputs input[type=file]").set_input_files(str(path))


def plan(page: Page, pattern: str) -> None:
    expect(page.locator("#plan textarea")).to_have_value(re.compile(pattern), timeout=30_000)


def test_page_restores_compares_and_downloads(page: Page, server: Server, clips, tmp_path):
    upload(page, clips["clip"])
    plan(page, r"^clip\.mp4: 48x32 -> 96x64, 9 frame\(s\) in 1 batch\(es\); memory about [\d.]+ [KMG]iB.*; about \d+ (s|min|h) \(planned\)")
    page.click("#restore")
    expect(page.locator("#status")).to_contain_text("Done", timeout=60_000)
    expect(page.locator("#compare img")).to_have_count(2)
    expect(page.locator("#after video")).to_have_count(1, timeout=10_000)
    with page.expect_download() as event:
        page.locator("#download a[download]").first.click()
    output = tmp_path / event.value.suggested_filename
    event.value.save_as(output)
    assert output.name == "clip_seedvr2.mp4"
    assert streams(output) == (96, 64, 9, ["audio", "subtitle", "video"])
    page.screenshot(path=str(artefacts(tmp_path) / "serve.png"), full_page=True)
    assert server.job_folders() == []


def test_page_shows_a_bad_upload_and_keeps_serving(page: Page, server: Server, clips):
    upload(page, clips["text"])
    plan(page, r"^Cannot restore this: notes\.mp4 is not a video")
    page.click("#restore")
    expect(page.locator("#status")).to_contain_text(
        "Error: notes.mp4 is not a video (mp4, mkv, mov, webm, avi, ...) or an image", timeout=30_000
    )
    assert server.job_folders() == []
    upload(page, clips["clip"])  # the server still serves
    page.click("#restore")
    expect(page.locator("#status")).to_contain_text("Done", timeout=60_000)


def test_cancel_stops_a_running_job(page: Page, server: Server, clips):
    upload(page, clips["long"])
    page.click("#restore")
    expect(page.locator("#status")).to_contain_text("frames/s", timeout=60_000)
    page.click("#cancel")
    expect(page.locator("#status")).to_contain_text("Cancelled: cancelled at frame", timeout=60_000)
    done = int(page.locator("#status").inner_text().split("at frame ")[1].split()[0])
    assert 0 < done < 105
    assert server.job_folders() == []


def test_api_restore_with_the_python_client(server: Server, clips):
    client = Client(server.url, verbose=False)
    output = Path(client.predict(handle_file(str(clips["clip"])), scale=2, api_name="/restore"))
    assert output.name == "clip_seedvr2.mp4"
    assert streams(output) == (96, 64, 9, ["audio", "subtitle", "video"])
    output = Path(client.predict(handle_file(str(clips["clip"])), resolution=48, codec="ffv1",
                                 api_name="/restore"))  # fmt: skip
    assert output.suffix == ".mkv" and streams(output)[:3] == (72, 48, 9)
    resized = Path(client.predict(handle_file(str(clips["clip"])), resolution=48, codec="ffv1",
                                  strength=0, api_name="/restore"))  # fmt: skip
    assert np.abs(read_frames(resized) - read_frames(output)).max() > 0.02  # the model's change
    with pytest.raises(Exception, match="notes.mp4 is not a video"):
        client.predict(handle_file(str(clips["text"])), scale=2, api_name="/restore")
    with pytest.raises(Exception, match="model 'elsewhere' is not offered here"):
        client.predict(handle_file(str(clips["clip"])), scale=2, model="elsewhere",
                       api_name="/restore")  # fmt: skip
    assert server.job_folders() == []


def test_the_readme_client_example_runs(server: Server, clips, tmp_path, monkeypatch):
    (code,) = [c for c in EVERY_BLOCK if SERVER_URL in c]
    write_video(tmp_path / "clip.mp4", pattern(3, 32, 48))  # few frames: 1080p stays quick
    monkeypatch.chdir(tmp_path)
    namespace: dict = {}
    exec(compile(code.replace(SERVER_URL, server.url), "README.md", "exec"), namespace)
    assert streams(Path(namespace["out"]))[1] == 1080  # the last call: resolution 1080
    assert server.job_folders() == []
