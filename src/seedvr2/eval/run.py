"""``seedvr2 eval`` as one call: load the models, run the benchmark, write tables and images."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

from seedvr2.errors import OutputError
from seedvr2.pipeline import Restorer
from seedvr2.pipeline.models import BUNDLED_MODEL
from seedvr2.weights.adapters import parse_adapter

from .benchmark import BenchmarkResult, BenchmarkSettings, run_benchmark
from .report import RESULT_FILES, plot_means, write_crops, write_tables

IMAGE_FOLDERS = ("crops", "plots")  # sub-folders of an eval output


def check_output_dir(output_dir: Path, overwrite: bool) -> None:
    """Refuse a folder that already holds results unless ``overwrite`` (before any model runs).

    Raises:
        OutputError: ``output_dir`` is a file, or holds results and ``overwrite`` is False.
    """
    if output_dir.exists() and not output_dir.is_dir():
        raise OutputError(f"{output_dir} is a file; give a folder for the results")
    found = [name for name in RESULT_FILES if (output_dir / name).exists()]
    found += [f"{name}/" for name in IMAGE_FOLDERS
              if (output_dir / name).is_dir() and any((output_dir / name).iterdir())]
    if found and not overwrite:
        raise OutputError(f"{output_dir} already holds results ({', '.join(found)}); pass "
                          "--overwrite to replace them, or choose another folder")


def model_name(spec: str | None) -> str:
    """Table label of a ``--model`` value: a folder's name, else the preset/repo id itself."""
    if spec is None:
        return BUNDLED_MODEL
    path = Path(spec)
    return path.name if path.is_dir() else spec


def adapter_name(spec: str) -> str:
    """Table label of a ``--lora`` value: the adapter folder's name, ``:SCALE`` unless 1."""
    folder, scale = parse_adapter(spec)
    return folder.name if scale == 1.0 else f"{folder.name}:{scale:g}"


def entries(
    models: Sequence[str | None], adapters: Sequence[str]
) -> dict[str, tuple[str | None, list[str]]]:
    """Table label -> (model, adapters): every model as is, then with each adapter alone."""
    out = {model_name(m): (m, []) for m in models}
    for m in models:
        out.update({f"{model_name(m)} + {adapter_name(a)}": (m, [a]) for a in adapters})
    return out


def evaluate(
    inputs: Sequence[str | Path],
    output_dir: str | Path,
    models: Sequence[str | None],
    settings: BenchmarkSettings,
    device: str = "auto",
    crops: bool = True,
    plots: bool = False,
    log: Callable[[str], None] = lambda _: None,
    adapters: Sequence[str] = (),
    overwrite: bool = False,
    strengths: Sequence[float] = (),
) -> BenchmarkResult:
    """Benchmark ``models`` (``None``: the bundled one), each also with every LoRA adapter of
    ``adapters`` (``ADAPTER[:SCALE]``, one at a time: base against adapted) and at every
    restore strength of ``strengths`` (``RestoreOptions.strength``), and the baselines; write
    the results.

    Writes ``results.{md,csv,json}`` to ``output_dir``, side-by-side crops to
    ``output_dir/crops`` and, with ``plots``, bar charts to ``output_dir/plots``; a folder that
    already holds results is refused unless ``overwrite`` (other files there are never touched).
    """
    output_dir = Path(output_dir)
    check_output_dir(output_dir, overwrite)
    restorers = {label: Restorer.from_pretrained(m, device=device, scale=settings.scale, lora=lora)
                 for label, (m, lora) in entries(models, adapters).items()}
    restorers |= {f"{label} @ strength {strength:g}": restorer.with_options(strength=strength)
                  for strength in dict.fromkeys(strengths) if strength != 1.0
                  for label, restorer in restorers.items()}
    on_output = (lambda clip, out: write_crops(clip, out, output_dir / "crops")) if crops else None
    result = run_benchmark(inputs, restorers, settings, on_output=on_output, log=log)
    write_tables(result, output_dir)
    if plots:
        plot_means(result, output_dir / "plots")
    return result
