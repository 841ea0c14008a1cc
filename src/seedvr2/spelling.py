"""How messages name settings: as command-line flags (``--device cpu``) or as the Python API's
arguments (``device="cpu"``).

Messages are written once, with flags; :class:`seedvr2.errors.SeedVR2Error` renders them for
whoever reads them. The command line switches to flags for the duration of a command
(:func:`command_line`); everywhere else (the Python API, the web app) the API spelling is used.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterator
from contextvars import ContextVar

_FLAGS: ContextVar[bool] = ContextVar("seedvr2_flag_spelling", default=False)

# flag -> the API's spelling; "{}" takes the flag's value, a template without it is a switch.
API_SPELLING = {
    "--attention": "attention={}", "--batch-size": "batch_size={}", "--cache-dir": "cache_dir={}",
    "--cfg-scale": "cfg_scale={}", "--codec": "codec={}", "--color": "color={}",
    "--compile": "compile=True", "--cond-noise": "cond_noise_scale={}", "--crf": "crf={}",
    "--decode-tile": "tiling.decode_tile={}", "--device": "device={}", "--devices": "devices={}",
    "--dtype": "dtype={}", "--encode-tile": "tiling.encode_tile={}", "--fps": "fps={}",
    "--frames": "max_frames={}", "--lora": "lora=[{}]", "--max-side": "max_side={}",
    "--model": "model={}", "--no-audio": "audio=False", "--no-memory-check": "memory_check=False",
    "--no-resume": "resume=False", "--offline": "offline=True", "--offload": "offload=True",
    "--overlap": "overlap={}", "--overwrite": "overwrite=True", "--pix-fmt": "pix_fmt={}",
    "--prepend": "prepend={}", "--preset": "preset={}", "--recursive": "recursive=True",
    "--resolution": "resolution={}", "--scale": "scale={}", "--seed": "seed={}",
    "--sequence-parallel": "sequence_parallel=True", "--skip-existing": "skip_existing=True",
    "--steps": "steps={}", "--suffix": "suffix={}", "--swap-blocks": "swap_blocks={}",
    "--temporal-chunk": "tiling.temporal_chunk={}", "--tile-overlap": "tiling.overlap={}",
}  # fmt: skip
# The word after a flag is its value when it looks like one (a number, a name with a digit
# such as bf16 or cuda:0, or a known choice); otherwise the flag is the subject of a sentence
# ("--crf applies to ...") and stands alone.
_TOKEN = r"[\w.:+/-]*\d[\w.:+/-]*(?:,[\w.:+/-]+)*"  # with a digit: 512, bf16, cuda:0,cuda:1
_VALUE = rf"(?:{_TOKEN}|cpu|cuda|mps|auto|sdpa|flash|wavelet|adain|lab|none)"
_FLAG = re.compile(rf"(?<![\w-])(--[a-z][a-z0-9-]*)(?: ({_VALUE})(?![\w-]|:\d))?")
_NUMBER = re.compile(r"-?\d+(\.\d+)?")


@contextlib.contextmanager
def command_line() -> Iterator[None]:
    """Messages name command-line flags inside this block."""
    token = _FLAGS.set(True)
    try:
        yield
    finally:
        _FLAGS.reset(token)


def _api(match: re.Match[str]) -> str:
    flag, value = match.group(1), match.group(2)
    template = API_SPELLING.get(flag)
    if template is None:  # a flag with no API counterpart (torchrun's, pip's)
        return match.group(0)
    if "{}" not in template:  # a switch: the word after it is not its value
        return template + ("" if value is None else f" {value}")
    if value is None:
        return template.replace("={}", "").replace("[{}]", "")
    end = value.rstrip(".:")  # sentence punctuation is not part of the value
    rendered = end if _NUMBER.fullmatch(end) else f'"{end}"'
    return template.format(rendered) + value[len(end):]


def for_reader(message: str) -> str:
    """``message`` with its flags in the spelling of whoever reads it (see the module doc).

    Commands quoted in backticks (`seedvr2 download 3b --cache-dir DIR`) stay as they are.
    """
    if _FLAGS.get():
        return message
    parts = message.split("`")
    return "`".join(part if i % 2 else _FLAG.sub(_api, part) for i, part in enumerate(parts))
