"""Mean PSNR / SSIM / NIQE per method of ``seedvr2 eval`` result folders, with each method's
difference to bicubic, then each method's worst and mean PSNR difference over the folders (the
selection rule of the bundled model): ``python scripts/summarize_eval.py runs/eval-*``."""

from __future__ import annotations

import csv
import sys
from collections import defaultdict
from pathlib import Path


def means(folder: Path) -> dict[str, dict[str, float]]:
    values: dict[tuple[str, str], list[float]] = defaultdict(list)
    with open(folder / "results.csv") as handle:
        for row in csv.DictReader(handle):
            if row["value"] not in ("", "nan"):
                values[(row["method"], row["metric"])].append(float(row["value"]))
    table: dict[str, dict[str, float]] = defaultdict(dict)
    for (method, metric), found in values.items():
        table[method][metric] = sum(found) / len(found)
    return table


def main() -> None:
    print("| input | method | PSNR | ΔPSNR | SSIM | ΔSSIM | NIQE |")
    print("|---|---|---|---|---|---|---|")
    gains: dict[str, list[float]] = defaultdict(list)
    for folder in map(Path, sys.argv[1:]):
        table = means(folder)
        base = table["bicubic"]
        for method, scores in table.items():
            if method in ("lanczos_unsharp", "ground_truth"):
                continue
            psnr, ssim, niqe = (scores.get(k, float("nan")) for k in ("psnr", "ssim", "niqe"))
            print(f"| {folder.name} | {method} | {psnr:.2f} | {psnr - base['psnr']:+.2f} | "
                  f"{ssim:.4f} | {ssim - base['ssim']:+.4f} | {niqe:.2f} |")
            if method != "bicubic":
                gains[method].append(psnr - base["psnr"])
    print("\n| method | worst ΔPSNR | mean ΔPSNR | inputs |\n|---|---|---|---|")
    for method, found in gains.items():
        print(f"| {method} | {min(found):+.3f} | {sum(found) / len(found):+.3f} | {len(found)} |")


if __name__ == "__main__":
    main()
