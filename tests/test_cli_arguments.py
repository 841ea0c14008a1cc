"""``seedvr2 restore`` checks every argument before any input is read or model loaded; --help."""

from __future__ import annotations

import time

import numpy as np
import pytest

from media_fixtures import write_image
from seedvr2 import Restorer
from seedvr2.cli import main
from seedvr2.pipeline import planning

BAD_ARGUMENTS = [
    ("--scale", "0"), ("--scale", "nan"), ("--frames", "0"), ("--resolution", "8"),
    ("--max-side", "0"), ("--batch-size", "4"), ("--batch-size", "0"), ("--overlap", "-1"),
    ("--overlap", "21"), ("--prepend", "-2"), ("--steps", "0"), ("--color", "sepia"),
    ("--seed", str(2**64)), ("--cfg-scale", "inf"), ("--cond-noise", "2"),
    ("--encode-tile", "60"), ("--decode-tile", "100"), ("--tile-overlap", "12"),
    ("--temporal-chunk", "3"), ("--swap-blocks", "-1"), ("--device", "tpu"),
    ("--devices", "cpu,tpu"), ("--attention", "flash"), ("--start", "1:75"),
    ("--duration", "0"), ("--sequence-fps", "0"), ("--crf", "70"), ("--pix-fmt", "nope"),
    ("--format", "avi"), ("--fps", "-25"), ("--report", "/no/such/folder/run.json"),
]  # fmt: skip


@pytest.fixture
def image(tmp_path):
    return write_image(tmp_path / "in.png", np.zeros((24, 32, 3), np.uint8), "rgb24")


@pytest.fixture
def nothing_heavy(monkeypatch):
    """Fail the test if an input is planned or a model loaded."""

    def heavy(*args, **kwargs):
        raise AssertionError("heavy work started")

    monkeypatch.setattr(Restorer, "from_pretrained", heavy)
    monkeypatch.setattr(planning, "plan_job", heavy)


@pytest.mark.parametrize(("flag", "value"), BAD_ARGUMENTS, ids=[" ".join(a) for a in BAD_ARGUMENTS])
def test_bad_argument_is_a_usage_error_naming_the_flag(image, tmp_path, capsys, nothing_heavy,
                                                       flag, value):  # fmt: skip
    began = time.perf_counter()
    with pytest.raises(SystemExit) as exited:
        main(["restore", str(image), "-o", str(tmp_path / "out.png"), "--device", "cpu",
              f"{flag}={value}"])  # fmt: skip
    assert exited.value.code == 2
    assert time.perf_counter() - began < 2
    error = capsys.readouterr().err.strip().splitlines()[-1]
    assert error.startswith("seedvr2 restore: error: ") and flag in error
    assert not (tmp_path / "out.png").exists()


def test_help_shows_defaults_and_an_advanced_group(capsys):
    with pytest.raises(SystemExit) as exited:
        main(["restore", "--help"])
    assert exited.value.code == 0
    text = capsys.readouterr().out
    main_part, advanced = (" ".join(part.split()) for part in text.split("\nadvanced:\n"))
    assert "(default: 1, the input's size" in main_part  # --scale
    for default in ("memory; default: 21)", "batches (default: 4)", "(default: 666)"):
        assert default in main_part  # --batch-size, --overlap, --seed
    for flag in ("--cfg-scale", "--cond-noise", "--temporal-chunk", "--attention", "--steps",
                 "--no-memory-check"):  # fmt: skip
        assert f" {flag} " in advanced and f" {flag} " not in main_part


def test_the_cli_offers_the_colour_corrections_a_dit_may_name():
    from seedvr2.cli import COLOR_CORRECTIONS
    from seedvr2.models.dit.config import COLOR_CORRECTION_NAMES

    assert COLOR_CORRECTIONS == COLOR_CORRECTION_NAMES
