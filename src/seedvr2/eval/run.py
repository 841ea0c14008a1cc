"""``seedvr2 eval`` as one call: load the models, run the benchmark, write tables and images."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

from seedvr2.pipeline import Restorer
from seedvr2.pipeline.models import BUNDLED_MODEL
from seedvr2.weights.adapters import parse_adapter

from .benchmark import BenchmarkResult, BenchmarkSettings, run_benchmark
from .report import plot_means, write_crops, write_tables


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
) -> BenchmarkResult:
    """Benchmark ``models`` (``None``: the bundled one), each also with every LoRA adapter of
    ``adapters`` (``ADAPTER[:SCALE]``, one at a time: base against adapted), and the baselines;
    write the results.

    Writes ``results.{md,csv,json}`` to ``output_dir``, side-by-side crops to
    ``output_dir/crops`` and, with ``plots``, bar charts to ``output_dir/plots``.
    """
    restorers = {label: Restorer.from_pretrained(m, device=device, scale=settings.scale, lora=lora)
                 for label, (m, lora) in entries(models, adapters).items()}
    output_dir = Path(output_dir)
    on_output = (lambda clip, out: write_crops(clip, out, output_dir / "crops")) if crops else None
    result = run_benchmark(inputs, restorers, settings, on_output=on_output, log=log)
    write_tables(result, output_dir)
    if plots:
        plot_means(result, output_dir / "plots")
    return result
