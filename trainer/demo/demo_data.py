"""Built-in demo data: a seeded multi-label image set of shapes.

Each image holds any subset of the labels (circle, square, triangle, star, cross), each present
independently, drawn at a random colour, size, rotation and position over a varied background
(flat, gradient or striped) with pixel noise. Some images hold no shape at all: valid negatives.
Written as PNG files plus a `filename,labels` CSV (labels joined by spaces) per split.
"""

from __future__ import annotations

import csv
import io
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from edge_runtime import atomic

MIN_IMAGE_SIZE = 16  # smaller images cannot hold a 3x3 grid of visible shapes
SHAPES = ("circle", "square", "triangle", "star", "cross")


@dataclass(frozen=True)
class DemoConfig:
    out_dir: str
    n_train: int = 1500
    n_test: int = 300
    image_size: int = 96
    seed: int = 0
    p_present: float = 0.4
    labels: tuple[str, ...] = SHAPES

    def __post_init__(self) -> None:
        if self.image_size < MIN_IMAGE_SIZE:
            raise ValueError(f"demo image size must be >= {MIN_IMAGE_SIZE}, got {self.image_size}")
        if self.n_train < 0 or self.n_test < 0:
            raise ValueError(
                f"demo image counts must be >= 0, got {self.n_train} and {self.n_test}"
            )


def make_demo_dataset(config: DemoConfig) -> tuple[Path, Path]:
    """Write `train/`, `test/` image folders and `train.csv`, `test.csv`; return the two CSVs."""
    out = Path(config.out_dir)
    rng = np.random.default_rng(config.seed)
    csvs = []
    for split, n in (("train", config.n_train), ("test", config.n_test)):
        folder = out / split
        folder.mkdir(parents=True, exist_ok=True)
        rows = []
        for i in range(n):
            present = [s for s in config.labels if rng.random() < config.p_present]
            img = draw_image(present, config.image_size, rng)
            name = f"{split}/{i:05d}.png"
            img.save(out / name)
            rows.append((name, " ".join(present)))
        csvs.append(write_split_csv(out / f"{split}.csv", rows))
    return csvs[0], csvs[1]


def write_split_csv(path: Path, rows: list[tuple[str, str]]) -> Path:
    """A `filename,labels` CSV (labels joined by spaces), written atomically."""
    buf = io.StringIO(newline="")
    w = csv.writer(buf)
    w.writerow(["filename", "labels"])
    w.writerows(rows)
    return atomic.write_text(path, buf.getvalue())


def draw_image(shapes: list[str], size: int, rng: np.random.Generator) -> Image.Image:
    """One RGB image of `size`x`size` holding exactly `shapes`."""
    img = _background(size, rng)
    draw = ImageDraw.Draw(img)
    # One cell of a 3x3 grid per shape (jittered), so shapes may touch but never hide each other.
    cells = rng.permutation(9)[: len(shapes)]
    cell = size / 3
    for shape, c in zip(shapes, cells):
        r = rng.uniform(0.28, 0.45) * cell * 1.4
        cx = (c % 3 + 0.5) * cell + rng.uniform(-0.15, 0.15) * cell
        cy = (c // 3 + 0.5) * cell + rng.uniform(-0.15, 0.15) * cell
        colour = contrasting_colour(img.getpixel((int(cx), int(cy))), rng)
        _draw_shape(draw, shape, cx, cy, r, rng.uniform(0, 2 * math.pi), colour)
    a = np.asarray(img, dtype=np.int16) + rng.normal(0, 8, (size, size, 3)).astype(np.int16)
    return Image.fromarray(np.clip(a, 0, 255).astype(np.uint8), "RGB")


def _background(size: int, rng: np.random.Generator) -> Image.Image:
    kind = rng.integers(3)
    c1 = rng.integers(0, 256, 3)
    c2 = rng.integers(0, 256, 3)
    t = np.linspace(0, 1, size)[:, None, None]
    if kind == 0:  # flat
        a = np.broadcast_to(c1, (size, size, 3))
    elif kind == 1:  # linear gradient, horizontal or vertical
        a = c1 * (1 - t) + c2 * t
        a = np.broadcast_to(a, (size, size, 3))
        if rng.random() < 0.5:
            a = a.transpose(1, 0, 2)
    else:  # soft stripes
        period = rng.uniform(8, 24)
        w = (np.sin(2 * math.pi * np.arange(size) / period) * 0.5 + 0.5)[:, None, None]
        a = np.broadcast_to(c1 * (1 - w * 0.4) + c2 * (w * 0.4), (size, size, 3))
    return Image.fromarray(np.ascontiguousarray(a).astype(np.uint8), "RGB")


def contrasting_colour(
    bg: tuple, rng: np.random.Generator, min_distance: int = 200
) -> tuple[int, int, int]:
    """A random colour at least `min_distance` (sum of |RGB differences|) from `bg`, else its inverse."""
    for _ in range(50):
        c = rng.integers(0, 256, 3)
        if np.abs(c - np.asarray(bg[:3])).sum() > min_distance:
            return tuple(int(v) for v in c)
    return tuple(int(255 - v) for v in bg[:3])


def _draw_shape(
    draw: ImageDraw.ImageDraw,
    shape: str,
    cx: float,
    cy: float,
    r: float,
    angle: float,
    colour: tuple,
) -> None:
    def polygon(n: int, radius_fn) -> list[tuple[float, float]]:
        return [
            (
                cx + radius_fn(k) * math.cos(angle + 2 * math.pi * k / n),
                cy + radius_fn(k) * math.sin(angle + 2 * math.pi * k / n),
            )
            for k in range(n)
        ]

    if shape == "circle":
        draw.ellipse([cx - r, cy - r, cx + r, cy + r], fill=colour)
    elif shape == "square":
        draw.polygon(polygon(4, lambda k: r), fill=colour)
    elif shape == "triangle":
        draw.polygon(polygon(3, lambda k: r * 1.1), fill=colour)
    elif shape == "star":
        draw.polygon(polygon(10, lambda k: r * 1.15 if k % 2 == 0 else r * 0.45), fill=colour)
    elif shape == "cross":
        w = r * 0.35
        arms = [(-r, -w, r, w), (-w, -r, w, r)]
        for x0, y0, x1, y1 in arms:
            corners = [(x0, y0), (x1, y0), (x1, y1), (x0, y1)]
            ca, sa = math.cos(angle), math.sin(angle)
            draw.polygon(
                [(cx + x * ca - y * sa, cy + x * sa + y * ca) for x, y in corners], fill=colour
            )
    else:
        raise ValueError(f"unknown shape {shape!r}")
