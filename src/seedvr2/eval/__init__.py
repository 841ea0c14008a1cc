"""Evaluation: metrics, the synthetic benchmark protocol, baselines and benchmark reports.

``evaluate`` (``seedvr2 eval``) restores ground-truth clips degraded by :mod:`.protocol` (or real
low-quality clips) with models and the :mod:`.baselines`, and writes metric tables.
"""

from .baselines import BASELINES, bicubic, lanczos_unsharp
from .benchmark import BenchmarkResult, BenchmarkSettings, collect_inputs, run_benchmark
from .protocol import clip_seed, synthesize_lq
from .report import to_csv, to_json, to_markdown, write_tables
from .run import evaluate

__all__ = [
    "BASELINES",
    "BenchmarkResult",
    "BenchmarkSettings",
    "bicubic",
    "clip_seed",
    "collect_inputs",
    "evaluate",
    "lanczos_unsharp",
    "run_benchmark",
    "synthesize_lq",
    "to_csv",
    "to_json",
    "to_markdown",
    "write_tables",
]
