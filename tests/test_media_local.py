"""Media files are opened as local files whatever their names, and never follow other files."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator

import numpy as np
import pytest

from media_fixtures import packets, pattern, write_image, write_video
from seedvr2.errors import InputError
from seedvr2.media import MediaWriter, open_media, read_frames


@pytest.fixture
def listener() -> Iterator[tuple[int, list[int]]]:
    """A local TCP port that records (and drops) every connection made to it."""
    server = socket.create_server(("127.0.0.1", 0))
    server.settimeout(0.05)
    connections: list[int] = []
    done = threading.Event()

    def accept() -> None:
        while not done.is_set():
            try:
                server.accept()[0].close()
                connections.append(1)
            except TimeoutError:
                pass

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield server.getsockname()[1], connections
    done.set()
    thread.join()
    server.close()


def test_input_names_that_look_like_urls_or_patterns_are_read_as_those_files(
    tmp_path, monkeypatch, listener
):
    port, connections = listener
    monkeypatch.chdir(tmp_path)  # relative names: how a user types them
    write_video(tmp_path / "x.mp4", pattern(2, 16, 24))
    write_video(tmp_path / "file:x.mp4", pattern(3, 32, 48))
    write_video(tmp_path / f"tcp:127.0.0.1:{port}.mp4", pattern(1, 16, 16))
    write_image(tmp_path / "a0.png", np.zeros((8, 8, 3), np.uint8), "rgb24")
    white = write_image(tmp_path / "white.png", np.full((8, 8, 3), 255, np.uint8), "rgb24")
    white.rename(tmp_path / "a%d.png")  # FFmpeg's image2 muxer would expand the name too
    assert read_frames("file:x.mp4").shape == (3, 32, 48, 3)  # not x.mp4 beside it
    assert read_frames(f"tcp:127.0.0.1:{port}.mp4").shape == (1, 16, 16, 3)
    assert read_frames("a%d.png").min() == 1  # not the numbered a0.png
    assert connections == []


@pytest.mark.parametrize("entry", ["x.mp4", "http://127.0.0.1:{port}/x.mp4"])
def test_a_list_of_other_files_is_refused_without_opening_them(tmp_path, listener, entry):
    port, connections = listener
    write_video(tmp_path / "x.mp4", pattern(2, 16, 24))
    playlist = tmp_path / "list.mp4"
    playlist.write_text(f"ffconcat version 1.0\nfile '{entry.format(port=port)}'\n")
    with pytest.raises(InputError, match=r"list\.mp4: .*not followed"):
        open_media(playlist)
    assert connections == []


def test_outputs_and_copied_streams_use_the_exact_names(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    source = write_video(tmp_path / "file:s.mkv", pattern(3, 16, 24), audio="aac")
    write_video(tmp_path / "s.mkv", pattern(3, 16, 24))  # no audio: reading it loses the sound
    info = open_media("file:s.mkv").info
    assert info.has_audio
    with MediaWriter.for_source("file:out.mkv", info) as writer:
        for frame in open_media("file:s.mkv").frames():
            writer.write(frame.image, frame.pts)
    names = sorted(path.name for path in tmp_path.iterdir())
    assert names == ["file:out.mkv", "file:s.mkv", "s.mkv"]
    assert packets(tmp_path / "file:out.mkv", "audio") == packets(source, "audio")
