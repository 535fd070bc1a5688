"""Everyday objects pasted on photographs, drawn in one style for training and another for test.

The situation of a user whose new camera, light or site differs from the training photos: the
same objects (a cat, a car, a cup ...) in a different appearance. Everything comes from installed
packages, nothing is downloaded while the data is made:

- backgrounds: the sample photographs inside the scikit-image wheel and scikit-learn's two
  (those showing a labelled object - scikit-image's cat and coffee cup - are left out), randomly
  cropped, flipped, tinted;
- training style: Google's Noto Color Emoji (Debian: `apt-get install fonts-noto-color-emoji`),
  rendered by Pillow with its embedded colour at size 109 (the font's bitmap strike);
- test style: Twitter's Twemoji, the 64 px PNGs of the npm package `emoji-datasource-twitter`
  (`npm install --prefix DIR emoji-datasource-twitter@16.0.0`).

Each image holds any subset of the labels (each present with its own prevalence: a long tail),
every object at a random scale, position, small rotation and mirror, placed to overlap others
little. Seeded: the same arguments give the same files.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageEnhance, ImageFont

NOTO_FONT = Path("/usr/share/fonts/truetype/noto/NotoColorEmoji.ttf")
NOTO_SIZE = 109  # the font's only bitmap strike (CBDT): other sizes do not render in colour
TWEMOJI_PACKAGE = "emoji-datasource-twitter"
TWEMOJI_VERSION = "16.0.0"

# label -> the emoji that show it (code points); prevalence falls along the list (a long tail).
OBJECTS: dict[str, tuple[str, ...]] = {
    "car": ("\U0001f697", "\U0001f699", "\U0001f695"),
    "tree": ("\U0001f333", "\U0001f332"),
    "dog": ("\U0001f415", "\U0001f429"),
    "cup": ("\u2615", "\U0001f375"),
    "house": ("\U0001f3e0", "\U0001f3e1"),
    "cat": ("\U0001f408", "\U0001f408\u200d\u2b1b"),
    "apple": ("\U0001f34e", "\U0001f34f"),
    "bicycle": ("\U0001f6b2",),
    "bird": ("\U0001f426", "\U0001f54a"),
    "banana": ("\U0001f34c",),
}
PREVALENCE = (0.45, 0.38, 0.32, 0.26, 0.21, 0.17, 0.14, 0.11, 0.08, 0.06)
COLOUR_BACKGROUNDS = ("astronaut", "rocket", "hubble_deep_field", "immunohistochemistry", "retina")
GREY_BACKGROUNDS = ("brick", "grass", "gravel", "moon", "camera", "coins", "cell", "page")


class MissingMaterial(RuntimeError):
    """A package the data needs is not installed (the message says which command installs it)."""


@dataclass(frozen=True)
class SceneConfig:
    out_dir: str
    n_images: int
    style: str  # "noto" (training) or "twemoji" (test)
    seed: int
    image_size: int = 256
    min_object: float = 0.22  # object side as a fraction of the image side
    max_object: float = 0.42
    max_rotation: float = 15.0  # degrees
    twemoji_dir: str | None = None  # the npm package folder (node_modules/emoji-datasource-twitter)


def backgrounds() -> list[np.ndarray]:
    """The background photographs as HxWx3 uint8 (grey ones as RGB), from the installed wheels."""
    import skimage.data as skd
    from sklearn.datasets import load_sample_images

    out = [np.asarray(getattr(skd, n)())[..., :3] for n in COLOUR_BACKGROUNDS]
    out += [np.asarray(skd.stereo_motorcycle()[0])]
    out += [np.stack([np.asarray(getattr(skd, n)())] * 3, -1) for n in GREY_BACKGROUNDS]
    out += list(load_sample_images().images)  # a palace in China, a flower
    return [np.ascontiguousarray(a, dtype=np.uint8) for a in out]


class Glyphs:
    """RGBA pictures of each emoji in one style, cropped to their drawn pixels."""

    def __init__(self, style: str, twemoji_dir: str | None = None) -> None:
        self.style = style
        if style == "noto":
            if not NOTO_FONT.is_file():
                raise MissingMaterial(
                    f"{NOTO_FONT} missing: apt-get install fonts-noto-color-emoji"
                )
            self._font = ImageFont.truetype(str(NOTO_FONT), NOTO_SIZE)
        elif style == "twemoji":
            root = Path(twemoji_dir or "")
            if not (root / "emoji.json").is_file():
                raise MissingMaterial(
                    f"{TWEMOJI_PACKAGE} not found in {root}: npm install --prefix DIR "
                    f"{TWEMOJI_PACKAGE}@{TWEMOJI_VERSION} and pass "
                    f"DIR/node_modules/{TWEMOJI_PACKAGE}"
                )
            self._root = root
            entries = json.loads((root / "emoji.json").read_text())
            self._files = {
                e["unified"].lower(): e["image"] for e in entries if e["has_img_twitter"]
            }
            for e in entries:  # skin-tone-free variations (ZWJ sequences such as the black cat)
                for v in (e.get("non_qualified"),):
                    if v:
                        self._files.setdefault(v.lower(), e["image"])
        else:
            raise ValueError(f"style must be noto or twemoji, got {style!r}")
        self._cache: dict[str, Image.Image] = {}

    def get(self, emoji: str) -> Image.Image:
        if emoji not in self._cache:
            self._cache[emoji] = self._render(emoji)
        return self._cache[emoji]

    def _render(self, emoji: str) -> Image.Image:
        if self.style == "noto":
            img = Image.new("RGBA", (NOTO_SIZE * 2, NOTO_SIZE * 2), (0, 0, 0, 0))
            ImageDraw.Draw(img).text((0, 0), emoji, font=self._font, embedded_color=True)
        else:
            code = "-".join(f"{ord(c):x}" for c in emoji)
            name = self._files.get(code) or self._files.get(code + "-fe0f")
            if name is None:
                raise MissingMaterial(f"no Twemoji picture for {emoji!r} ({code})")
            img = Image.open(self._root / "img" / "twitter" / "64" / name).convert("RGBA")
        box = img.getchannel("A").getbbox()
        if box is None:
            raise MissingMaterial(f"{emoji!r} renders empty in {self.style}")
        return img.crop(box)


def make_scenes(cfg: SceneConfig) -> Path:
    """Write cfg.n_images JPEGs and `labels.csv` (filename,labels) into cfg.out_dir."""
    rng = np.random.default_rng(cfg.seed)
    glyphs = Glyphs(cfg.style, cfg.twemoji_dir)
    bgs = backgrounds()
    labels = list(OBJECTS)
    out = Path(cfg.out_dir)
    (out / "img").mkdir(parents=True, exist_ok=True)
    rows = ["filename,labels"]
    for i in range(cfg.n_images):
        present = [lab for lab, p in zip(labels, PREVALENCE) if rng.random() < p]
        img = _background(bgs[rng.integers(len(bgs))], cfg.image_size, rng)
        boxes: list[tuple[int, int, int, int]] = []
        for lab in rng.permutation(present):
            emoji = OBJECTS[lab][rng.integers(len(OBJECTS[lab]))]
            _paste(img, glyphs.get(emoji), cfg, rng, boxes)
        name = f"img/{cfg.style}_{i:05d}.jpg"
        img.convert("RGB").save(out / name, quality=90)
        rows.append(f"{name},{' '.join(sorted(present))}")
    csv = out / "labels.csv"
    csv.write_text("\n".join(rows) + "\n")
    return csv


def _background(photo: np.ndarray, size: int, rng: np.random.Generator) -> Image.Image:
    """A random square crop (40-100% of the short side), mirrored at random, tinted if grey."""
    h, w = photo.shape[:2]
    side = int(min(h, w) * rng.uniform(0.4, 1.0))
    y, x = rng.integers(0, h - side + 1), rng.integers(0, w - side + 1)
    img = Image.fromarray(photo[y : y + side, x : x + side]).resize((size, size), Image.BILINEAR)
    if rng.random() < 0.5:
        img = img.transpose(Image.FLIP_LEFT_RIGHT)
    if photo[..., 0].tobytes() == photo[..., 1].tobytes():  # grey: give it a colour cast
        tint = Image.new("RGB", img.size, tuple(int(v) for v in rng.integers(40, 255, 3)))
        img = Image.blend(img, tint, float(rng.uniform(0.15, 0.4)))
    img = ImageEnhance.Brightness(img).enhance(float(rng.uniform(0.7, 1.2)))
    return img.convert("RGBA")


def _paste(img, glyph, cfg: SceneConfig, rng, boxes: list) -> None:
    """Paste `glyph` scaled, rotated and maybe mirrored where it overlaps earlier objects least."""
    side = int(cfg.image_size * rng.uniform(cfg.min_object, cfg.max_object))
    g = glyph.resize((side, max(1, round(side * glyph.height / glyph.width))), Image.LANCZOS)
    if rng.random() < 0.5:
        g = g.transpose(Image.FLIP_LEFT_RIGHT)
    g = g.rotate(
        float(rng.uniform(-cfg.max_rotation, cfg.max_rotation)), Image.BICUBIC, expand=True
    )
    best = None
    for _ in range(20):  # the least-overlapping of 20 random places
        x = int(rng.integers(0, max(1, img.width - g.width)))
        y = int(rng.integers(0, max(1, img.height - g.height)))
        box = (x, y, x + g.width, y + g.height)
        overlap = max((_overlap(box, b) for b in boxes), default=0.0)
        if best is None or overlap < best[0]:
            best = (overlap, box)
        if overlap < 0.1:
            break
    boxes.append(best[1])
    img.alpha_composite(g, best[1][:2])


def _overlap(a, b) -> float:
    """Intersection over the smaller box's area."""
    w = min(a[2], b[2]) - max(a[0], b[0])
    h = min(a[3], b[3]) - max(a[1], b[1])
    if w <= 0 or h <= 0:
        return 0.0
    small = min((a[2] - a[0]) * (a[3] - a[1]), (b[2] - b[0]) * (b[3] - b[1]))
    return w * h / small
