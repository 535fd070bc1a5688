"""A harder demo: small objects at random scale and rotation, in clutter, on textured backgrounds.

Closer to what users bring than the shapes demo: each labelled object covers ~2-5% of the picture,
distractor blobs and strokes (never labelled) share its colours, backgrounds are multi-octave
noise textures under uneven lighting, saved as JPEG, and label frequencies fall off in a long
tail. `camera` shifts colour cast, noise and blur, so a "new camera" set differs from an old
one the way real cameras do. The label pool is larger than one task: pretraining on one subset
and transferring to another is "a different task in the same kind of photos".
"""

from __future__ import annotations

import io
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from edge_runtime import atomic

from .demo_data import contrasting_colour, write_split_csv

POOL = (
    "circle",
    "square",
    "triangle",
    "star",
    "cross",
    "hexagon",
    "ring",
    "arrow",
    "diamond",
    "pentagon",
    "bar",
    "tee",
)


@dataclass(frozen=True)
class ClutterConfig:
    out_dir: str
    n_train: int = 300
    n_test: int = 300
    image_size: int = 64
    seed: int = 0
    labels: tuple[str, ...] = POOL[:7]
    p_first: float = 0.45  # presence probability of the first label ...
    tail: float = 0.7  # ... each next label's is this times the previous one (a long tail)
    camera: int = 0  # 0, 1, 2, ...: a different colour cast, noise and blur per camera
    scale: float = 1.4  # object size multiplier (1: radius 5-9% of the side)
    distractors: tuple[int, int] = (3, 8)  # unlabelled blobs and strokes per image, [lo, hi)

    def __post_init__(self) -> None:
        if self.image_size < 32:
            raise ValueError(f"clutter demo image size must be >= 32, got {self.image_size}")
        unknown = set(self.labels) - set(POOL)
        if unknown:
            raise ValueError(
                f"unknown clutter demo labels: {sorted(unknown)}; known: {', '.join(POOL)}"
            )

    def presence(self) -> np.ndarray:
        return self.p_first * self.tail ** np.arange(len(self.labels))


def make_clutter_dataset(config: ClutterConfig) -> tuple[Path, Path]:
    """Write `train/`, `test/` JPEG folders and `train.csv`, `test.csv`; return the two CSVs."""
    out = Path(config.out_dir)
    rng = np.random.default_rng([config.seed, config.camera])
    p = config.presence()
    csvs = []
    for split, n in (("train", config.n_train), ("test", config.n_test)):
        (out / split).mkdir(parents=True, exist_ok=True)
        rows = []
        for i in range(n):
            present = [name for name, q in zip(config.labels, p) if rng.random() < q]
            img = draw_clutter(
                present, config.image_size, rng, config.camera, config.scale, config.distractors
            )
            name = f"{split}/{i:05d}.jpg"
            buf = io.BytesIO()
            img.save(buf, "JPEG", quality=88)
            atomic.write_bytes(out / name, buf.getvalue())
            rows.append((name, " ".join(present)))
        csvs.append(write_split_csv(out / f"{split}.csv", rows))
    return csvs[0], csvs[1]


def draw_clutter(
    objects: list[str],
    size: int,
    rng: np.random.Generator,
    camera: int = 0,
    scale: float = 1.0,
    distractors: tuple[int, int] = (3, 8),
) -> Image.Image:
    img = Image.fromarray(_texture(size, rng), "RGB")
    draw = ImageDraw.Draw(img)
    items = list(objects) + ["blob"] * int(rng.integers(*distractors))
    for k in rng.permutation(
        len(items)
    ):  # distractors may cover objects partly, as in real clutter
        name = items[k]
        r = min(rng.uniform(0.05, 0.09) * scale, 0.3) * size
        cx, cy = rng.uniform(r, size - r, 2)
        colour = tuple(int(v) for v in rng.integers(0, 256, 3))
        if (
            name != "blob"
        ):  # a labelled object is visible against its surroundings (else its label is noise)
            colour = contrasting_colour(img.getpixel((int(cx), int(cy))), rng, min_distance=160)
        _draw(draw, name, cx, cy, r, rng.uniform(0, 2 * math.pi), colour, rng)
    cam = np.random.default_rng(1000 + camera)  # fixed per camera: its colour cast and optics
    cast = cam.uniform(0.8, 1.2, 3)
    blur = [0.0, 0.6, 0.3, 0.9][camera % 4]
    if blur:
        img = img.filter(ImageFilter.GaussianBlur(blur))
    noise = 6 + 4 * (camera % 3)
    a = np.asarray(img, np.float32) * cast + rng.normal(0, noise, (size, size, 3))
    return Image.fromarray(np.clip(a, 0, 255).astype(np.uint8), "RGB")


def _texture(size: int, rng: np.random.Generator) -> np.ndarray:
    """Multi-octave value noise in two random colours under a lighting gradient."""
    acc = np.zeros((size, size), np.float32)
    for octave, weight in ((4, 1.0), (8, 0.6), (16, 0.35), (32, 0.2)):
        grid = rng.random((octave, octave)).astype(np.float32)
        acc += weight * np.asarray(Image.fromarray(grid, "F").resize((size, size), Image.BICUBIC))
    acc = (acc - acc.min()) / max(float(acc.max() - acc.min()), 1e-6)
    c1, c2 = rng.integers(0, 256, 3), rng.integers(0, 256, 3)
    a = c1 * (1 - acc[..., None]) + c2 * acc[..., None]
    angle = rng.uniform(0, 2 * math.pi)
    yy, xx = np.mgrid[0:size, 0:size] / size
    light = 0.75 + 0.5 * ((np.cos(angle) * xx + np.sin(angle) * yy) % 1.0)[..., None] * rng.uniform(
        0.2, 0.6
    )
    return np.clip(a * light, 0, 255).astype(np.uint8)


def _draw(
    draw: ImageDraw.ImageDraw,
    name: str,
    cx: float,
    cy: float,
    r: float,
    angle: float,
    colour: tuple,
    rng: np.random.Generator,
) -> None:
    def poly(radii, stretch=(1.0, 1.0)) -> list[tuple[float, float]]:
        n = len(radii)
        pts = []
        for k, rad in enumerate(radii):
            x, y = (
                rad * math.cos(2 * math.pi * k / n) * stretch[0],
                rad * math.sin(2 * math.pi * k / n) * stretch[1],
            )
            pts.append(
                (
                    cx + x * math.cos(angle) - y * math.sin(angle),
                    cy + x * math.sin(angle) + y * math.cos(angle),
                )
            )
        return pts

    def rects(boxes) -> None:
        ca, sa = math.cos(angle), math.sin(angle)
        for x0, y0, x1, y1 in boxes:
            corners = [(x0, y0), (x1, y0), (x1, y1), (x0, y1)]
            draw.polygon(
                [(cx + x * ca - y * sa, cy + x * sa + y * ca) for x, y in corners], fill=colour
            )

    w = r * 0.35
    if (
        name == "blob"
    ):  # a distractor: an ellipse or a stroke (no polygons: they would look like labels)
        if rng.random() < 0.5:
            a, b = r * rng.uniform(0.4, 1.2), r * rng.uniform(0.4, 1.2)
            draw.ellipse([cx - a, cy - b, cx + a, cy + b], fill=colour)
        else:
            draw.line(
                [
                    (cx - r * 1.5 * math.cos(angle), cy - r * 1.5 * math.sin(angle)),
                    (cx + r * 1.5 * math.cos(angle), cy + r * 1.5 * math.sin(angle)),
                ],
                fill=colour,
                width=max(1, int(r * 0.3)),
            )
    elif name == "circle":
        draw.ellipse([cx - r, cy - r, cx + r, cy + r], fill=colour)
    elif name == "ring":
        draw.ellipse([cx - r, cy - r, cx + r, cy + r], outline=colour, width=max(2, int(r * 0.35)))
    elif name in ("square", "triangle", "hexagon", "pentagon"):
        n = {"square": 4, "triangle": 3, "hexagon": 6, "pentagon": 5}[name]
        draw.polygon(poly([r] * n), fill=colour)
    elif name == "diamond":
        draw.polygon(poly([r] * 4, stretch=(1.0, 0.55)), fill=colour)
    elif name == "star":
        draw.polygon(poly([r * 1.15 if k % 2 == 0 else r * 0.45 for k in range(10)]), fill=colour)
    elif name == "cross":
        rects([(-r, -w, r, w), (-w, -r, w, r)])
    elif name == "tee":
        rects([(-r, -r, r, -r + 2 * w), (-w, -r, w, r)])
    elif name == "bar":
        rects([(-r * 1.2, -w * 0.8, r * 1.2, w * 0.8)])
    elif name == "arrow":
        rects([(-r, -w * 0.7, r * 0.2, w * 0.7)])
        ca, sa = math.cos(angle), math.sin(angle)
        head = [
            (r, 0.0),
            (0.2 * r, 0.7 * r),
            (0.2 * r, -0.7 * r),
        ]  # the arrow head, pointing along +x
        draw.polygon([(cx + x * ca - y * sa, cy + x * sa + y * ca) for x, y in head], fill=colour)
    else:
        raise ValueError(f"unknown clutter object {name!r}")
