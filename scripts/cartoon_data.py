"""Flat-shaded cartoon frames for the LoRA demonstration of the bundled model's card.

A domain seedvr2-small was not trained on: flat colour regions with dark outlines, speech
bubbles with text, no texture or noise. ``runs/cartoon/train`` gets 48 frames (seed 0) and
``runs/cartoon/heldout`` 12 frames (seed 1) that training never reads.

    python scripts/cartoon_data.py
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

OUT = Path("runs/cartoon")
PALETTE = [(255, 214, 102), (239, 71, 111), (6, 214, 160), (17, 138, 178), (7, 59, 76),
           (255, 255, 255), (250, 160, 90), (140, 200, 255), (180, 120, 220), (90, 170, 80)]
WORDS = ["wow", "look", "out", "here", "we", "go", "again", "what", "a", "day", "hello", "there", "boom", "zap", "pow", "ok", "no", "yes"]


def colour(rng: np.random.Generator) -> tuple[int, int, int]:
    return PALETTE[int(rng.integers(len(PALETTE)))]


def frame(rng: np.random.Generator, w: int = 384, h: int = 288) -> Image.Image:
    img = Image.new("RGB", (w, h), colour(rng))
    draw = ImageDraw.Draw(img)
    draw.rectangle([0, int(h * rng.uniform(0.55, 0.8)), w, h], fill=colour(rng))  # ground
    outline = (int(rng.integers(0, 40)),) * 3
    for _ in range(int(rng.integers(4, 9))):
        x0, y0 = int(rng.integers(-20, w - 20)), int(rng.integers(-20, h - 20))
        x1, y1 = x0 + int(rng.integers(30, 160)), y0 + int(rng.integers(30, 160))
        width = int(rng.integers(2, 5))
        if rng.random() < 0.5:
            draw.ellipse([x0, y0, x1, y1], fill=colour(rng), outline=outline, width=width)
        else:
            draw.rounded_rectangle([x0, y0, x1, y1], radius=int(rng.integers(2, 20)),
                                   fill=colour(rng), outline=outline, width=width)
        if rng.random() < 0.5:  # eyes
            cx, cy, r = (x0 + x1) // 2, (y0 + y1) // 2, max(3, (x1 - x0) // 10)
            for dx in (-2 * r, 2 * r):
                draw.ellipse([cx + dx - r, cy - r, cx + dx + r, cy + r], fill=(255, 255, 255),
                             outline=outline, width=2)
                draw.ellipse([cx + dx - r // 2, cy - r // 2, cx + dx + r // 2, cy + r // 2],
                             fill=outline)
    if rng.random() < 0.7:  # speech bubble
        bx, by = int(rng.integers(0, w - 150)), int(rng.integers(0, h // 2))
        draw.ellipse([bx, by, bx + 150, by + 60], fill=(255, 255, 255), outline=outline, width=3)
        text = " ".join(rng.choice(WORDS, 2)).upper()
        try:
            font = ImageFont.truetype("DejaVuSans-Bold.ttf", int(rng.integers(12, 20)))
        except OSError:
            font = ImageFont.load_default()
        draw.text((bx + 18, by + 20), text, fill=outline, font=font)
    return img


def main() -> None:
    for split, seed, count in (("train", 0, 48), ("heldout", 1, 12)):
        folder = OUT / split
        folder.mkdir(parents=True, exist_ok=True)
        rng = np.random.default_rng(seed)
        for k in range(count):
            frame(rng).save(folder / f"cartoon_{k:02d}.png")
    print("frames in", OUT)


if __name__ == "__main__":
    main()
