"""Benchmark tables (Markdown, CSV, JSON), side-by-side crops and metric plots."""

from __future__ import annotations

import csv
import io
import json
import math
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

from seedvr2.errors import InputError
from seedvr2.media import MediaWriter
from seedvr2.weights.writing import write_atomically

from .benchmark import BenchmarkResult
from .metrics import get_metric

CROP = 96  # side of the crops, in output pixels
_GAP = 2  # white columns between crops
RESULT_FILES = ("results.md", "results.csv", "results.json")


def _fmt(value: float) -> str:
    return "–" if math.isnan(value) else f"{value:.4f}"


def _header(result: BenchmarkResult) -> list[str]:
    arrows = ["↑" if get_metric(m).higher_is_better else "↓" for m in result.metrics]
    return [f"{m} {a}" for m, a in zip(result.metrics, arrows)]


def _protocol(result: BenchmarkResult) -> str:
    s = result.settings
    if not s.reference:
        return f"real low-quality inputs up-scaled x{s.scale}; no-reference metrics only"
    lq = s.degradation or "bicubic down-scaling (antialiased, 8-bit)"
    frames = "all frames" if s.max_frames is None else f"first {s.max_frames} frames"
    return f"GT -> LQ x{s.scale} by {lq}, seed {s.seed}, {frames} per clip"


def to_markdown(result: BenchmarkResult) -> str:
    """Mean table, per-clip tables and notes on missing metrics."""
    header = ["method", *_header(result), "s / clip"]
    lines = [f"Protocol: {_protocol(result)}; {len(result.clips)} input(s): "
             f"{', '.join(result.clips)}.", "",
             "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for method in result.methods:
        times = [result.seconds[(method, c)] for c in result.clips if (method, c) in result.seconds]
        seconds = f"{sum(times) / len(times):.2f}" if times else "–"
        row = [method, *(_fmt(result.mean(method, m)) for m in result.metrics), seconds]
        lines.append("| " + " | ".join(row) + " |")
    if len(result.clips) > 1:
        for clip in result.clips:
            lines += ["", f"**{clip}**", "", "| " + " | ".join(["method", *_header(result)]) + " |",
                      "|" + "---|" * (len(result.metrics) + 1)]
            for method in result.methods:
                values = result.scores.get((method, clip), {})
                row = [method, *(_fmt(values.get(m, math.nan)) for m in result.metrics)]
                lines.append("| " + " | ".join(row) + " |")
    if result.notes:
        lines += ["", "Notes:"] + [f"- {m}: {why}" for m, why in sorted(result.notes.items())]
    return "\n".join(lines) + "\n"


def to_rows(result: BenchmarkResult) -> list[dict[str, Any]]:
    """Long-format rows ``{method, clip, metric, value}``; clip ``mean`` holds the means."""
    rows = []
    for method in result.methods:
        for metric in result.metrics:
            for clip in result.clips:
                value = result.scores.get((method, clip), {}).get(metric, math.nan)
                rows.append({"method": method, "clip": clip, "metric": metric, "value": value})
            rows.append({"method": method, "clip": "mean", "metric": metric,
                         "value": result.mean(method, metric)})
    return rows


def to_csv(result: BenchmarkResult) -> str:
    """:func:`to_rows` as CSV (empty value where a metric is missing)."""
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=["method", "clip", "metric", "value"])
    writer.writeheader()
    for row in to_rows(result):
        writer.writerow({**row, "value": "" if math.isnan(row["value"]) else row["value"]})
    return out.getvalue()


def to_json(result: BenchmarkResult) -> dict[str, Any]:
    """Settings, means, per-clip scores, timings and notes (NaN as null)."""

    def clean(value: float) -> float | None:
        return None if math.isnan(value) else value

    return {
        "protocol": _protocol(result),
        "settings": {k: getattr(result.settings, k) for k in
                     ("scale", "degradation", "seed", "max_frames", "reference")},
        "methods": result.methods,
        "metrics": result.metrics,
        "clips": result.clips,
        "mean": {m: {k: clean(result.mean(m, k)) for k in result.metrics} for m in result.methods},
        "scores": {m: {c: {k: clean(v) for k, v in result.scores[(m, c)].items()}
                       for c in result.clips if (m, c) in result.scores} for m in result.methods},
        "seconds": {m: {c: t for (mm, c), t in result.seconds.items() if mm == m}
                    for m in result.methods},
        "notes": result.notes,
    }


def write_tables(result: BenchmarkResult, folder: str | Path) -> list[Path]:
    """Write ``results.md``, ``results.csv`` and ``results.json`` into ``folder`` (each into a
    temporary, renamed when complete)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    texts = (to_markdown(result), to_csv(result),
             json.dumps(to_json(result), indent=2, ensure_ascii=False) + "\n")
    return [write_atomically(folder / name, partial(Path.write_text, data=text))
            for name, text in zip(RESULT_FILES, texts, strict=True)]


def side_by_side(outputs: dict[str, np.ndarray], size: int = CROP) -> np.ndarray:
    """Centre crops of frame 0 of every output (same size), left to right, as (h, W, 3).

    A smaller entry (the LQ input) is first up-scaled by pixel repetition to the largest size.
    """
    height = max(o.shape[1] for o in outputs.values())
    width = max(o.shape[2] for o in outputs.values())
    ch, cw = min(size, height), min(size, width)
    top, left = (height - ch) // 2, (width - cw) // 2
    crops = []
    for frames in outputs.values():
        frame = frames[0, ..., :3]  # (h, w, 3)
        if frame.shape[:2] != (height, width):
            ry, rx = height // frame.shape[0], width // frame.shape[1]
            if ry * frame.shape[0] != height or rx * frame.shape[1] != width:
                raise InputError(f"cannot align a {frame.shape[:2]} crop with {height}x{width}")
            frame = frame.repeat(ry, axis=0).repeat(rx, axis=1)
        crops += [frame[top:top + ch, left:left + cw], np.ones((ch, _GAP, 3), np.float32)]
    return np.concatenate(crops[:-1], axis=1).clip(0, 1).astype(np.float32)


def write_crops(clip: str, outputs: dict[str, np.ndarray], folder: str | Path) -> Path:
    """``folder/<clip>.png``: the side-by-side crops, with the order written to a .txt."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{Path(clip).stem}.png"
    with MediaWriter(path, overwrite=True) as writer:
        writer.write(side_by_side(outputs))
    path.with_suffix(".txt").write_text(" | ".join(outputs) + "\n")
    return path


def plot_means(result: BenchmarkResult, folder: str | Path) -> list[Path]:
    """One bar chart per metric (``folder/<metric>.png``); needs the ``eval`` extra's matplotlib.

    Raises:
        InputError: matplotlib is not installed.
    """
    try:
        import matplotlib

        matplotlib.use("Agg")
        from matplotlib import pyplot as plt
    except ImportError as err:
        raise InputError("plots need matplotlib: pip install 'seedvr2[eval]'") from err
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for metric in result.metrics:
        values = {m: result.mean(m, metric) for m in result.methods}
        values = {m: v for m, v in values.items() if not math.isnan(v)}
        if not values:
            continue
        fig, ax = plt.subplots(figsize=(1.2 + 1.1 * len(values), 3.2))
        ax.bar(list(values), list(values.values()), color="tab:blue")
        ax.set_title(f"{metric} ({'higher' if get_metric(metric).higher_is_better else 'lower'}"
                     " is better)")
        ax.tick_params(axis="x", labelrotation=20)
        fig.tight_layout()
        paths.append(folder / f"{metric}.png")
        fig.savefig(paths[-1], dpi=100)
        plt.close(fig)
    return paths
