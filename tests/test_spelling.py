"""Messages name settings as the reader passes them: flags on the command line, arguments in Python."""

from __future__ import annotations

import pytest

from media_fixtures import pattern, write_image
from seedvr2 import Restorer
from seedvr2.cli import main
from seedvr2.errors import InputError, OutputError
from seedvr2.pipeline import Job, restore_file
from seedvr2.spelling import command_line


def test_api_errors_name_the_api_arguments(tiny_model, tmp_path):
    with pytest.raises(InputError) as caught:
        Restorer.from_pretrained(tiny_model, device="mps")
    assert 'device="mps"' in str(caught.value) and 'use device="cpu"' in str(caught.value)
    assert "--" not in str(caught.value)
    source = write_image(tmp_path / "p.png", pattern(1, 16, 16)[0], "rgb24")
    (tmp_path / "out.png").write_bytes(b"mine")
    with pytest.raises(OutputError, match="pass overwrite=True to replace it or skip_existing=True"):
        restore_file(Restorer.from_pretrained(tiny_model, device="cpu"), Job(source, tmp_path / "out.png"))


def test_the_command_line_names_its_flags(tiny_model, tmp_path, capsys):
    source = write_image(tmp_path / "p.png", pattern(1, 16, 16)[0], "rgb24")
    with pytest.raises(SystemExit):  # a usage error
        main(["restore", str(source), "-o", str(tmp_path / "o.png"), "--model", str(tiny_model),
              "--device", "mps", "-q"])  # fmt: skip
    error = capsys.readouterr().err
    assert "--device cpu" in error and 'device="cpu"' not in error


def test_values_switches_and_quoted_commands():
    message = InputError("try --batch-size 9, --offload or --dtype bf16; run `seedvr2 download 3b "
                         "--cache-dir DIR`, then --no-memory-check")  # fmt: skip
    assert str(message) == ('try batch_size=9, offload=True or dtype="bf16"; run `seedvr2 download 3b '
                            '--cache-dir DIR`, then memory_check=False')  # fmt: skip
    with command_line():
        assert str(message) == message.args[0]
