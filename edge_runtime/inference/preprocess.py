"""The one preprocessing path.

Every image that reaches a model, in training, export calibration, the parity check and on the
device, goes through `load_image`. Train/serve skew (a different decoder, colour conversion,
orientation or resize on one side) is the classic silent bug of edge deployment; having exactly
one function makes it structurally impossible, and a test holds it to that.

What it does, in order:
1. decode with Pillow; for JPEG, decode at reduced scale (libjpeg DCT scaling, Pillow's `draft`)
   when the target is at least 2x smaller in both dimensions, never below 2x the target, so the
   final resize still antialiases;
2. apply the EXIF orientation tag;
3. convert any mode to RGB: 16-bit greyscale is scaled (not clipped) to 8 bits, transparency is
   composited over white, CMYK/palette/LA go through Pillow's conversions;
4. resize to the model input (width, height) by stretching (no crop: a crop can cut a labelled
   object out of a multi-label image) with Pillow's antialiased bilinear filter, after reducing a
   large picture by an integer factor (a box average, Pillow's `reducing_gap`) while it stays at
   least 2x the target: the filter's cost grows with the source's size, so a 1080p camera frame
   to 96 px costs about a quarter (measured 4.6 ms plain, 1.2 ms reduced; pixels differ by about
   1/255 on average). Files and frames go through the same step, so training sees what the device
   sees;
5. return a contiguous HxWx3 uint8 array. Normalisation is inside the model graph.
"""

from __future__ import annotations

import io
import os
import warnings
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from ..errors import ImageError, first_line

ImageSource = str | os.PathLike | bytes | Image.Image | np.ndarray

RESAMPLE = Image.Resampling.BILINEAR
# Reduce by an integer factor first while the picture stays >= this many times the target; the
# antialiased filter then shrinks by at most ~2x (Pillow's `reducing_gap`). Part of what the
# PREPROCESSING version describes: changing it changes pixels.
REDUCING_GAP = 2.0
# Recorded in every manifest and model file; the runtime warns when a model was trained with a
# different description (for example by an older toolkit).
PREPROCESSING: dict = {
    "version": 2,
    "decoder": "pillow",
    "exif_orientation": True,
    "color": "RGB",
    "alpha": "composite-over-white",
    "resize": "stretch",
    "filter": "bilinear-antialias",
    "reduce": "integer factor first (box average) while >= 2x the target (Pillow reducing_gap 2.0)",
    "jpeg_draft": "when target <= 1/2 source, never below 2x target",
    "dtype": "uint8",
    "range": "0-255 (normalisation is a layer inside the model)",
}


def load_image(source: ImageSource, size: tuple[int, int], *, draft: bool = True) -> np.ndarray:
    """Decode `source` and return it as a (height, width, 3) uint8 array of the model input size.

    `size` is (width, height), Pillow's order. `source` is a path, encoded bytes, a PIL image or
    an HxWx3 / HxW uint8 array (a camera frame). A frame already at `size` is returned as is,
    without a copy. Raises `ImageError` naming the source and the problem.
    """
    width, height = int(size[0]), int(size[1])
    if isinstance(source, np.ndarray):
        return _from_array(source, width, height)
    if isinstance(source, Image.Image):
        return finish(source, width, height, name="<PIL image>")
    name = _name(source)
    img = decode(source, (width, height), draft=draft)
    try:
        return finish(img, width, height, name=name)
    except (OSError, SyntaxError, ValueError) as exc:
        raise ImageError(name, f"cannot decode image ({first_line(exc)})") from None
    finally:
        img.close()


def decode(
    source: str | os.PathLike | bytes, size: tuple[int, int], *, draft: bool = True
) -> Image.Image:
    """Step 1 of `load_image` alone: open and decode an encoded image, pixels loaded.

    For a JPEG, libjpeg is asked for the smallest 1/2, 1/4 or 1/8 scale that stays >= 2x the
    target in both dimensions (the larger target side is used for both, so an EXIF rotation
    cannot make one side too small). Exposed for the benchmark's per-stage split.
    """
    name = _name(source)
    try:
        img = _open(source, name)
        if draft and img.format == "JPEG":
            side = 2 * max(int(size[0]), int(size[1]))
            img.draft("RGB", (side, side))
        img.load()  # truncated or corrupt data fails here
        return img
    except ImageError:
        raise
    except Image.DecompressionBombError as exc:
        raise ImageError(name, f"image too large (decompression-bomb limit): {exc}") from None
    except (OSError, SyntaxError, ValueError) as exc:
        # Pillow reports truncated or corrupt data as OSError/SyntaxError at load time.
        raise ImageError(name, f"cannot decode image ({first_line(exc)})") from None


def _name(source: object) -> str:
    return "<bytes>" if isinstance(source, (bytes, bytearray)) else str(source)


def _open(source: str | os.PathLike | bytes, name: str) -> Image.Image:
    if isinstance(source, (bytes, bytearray)):
        if not source:
            raise ImageError(name, "empty data (0 bytes)")
        fp = io.BytesIO(source)
    else:
        path = Path(source)
        if not path.exists():
            raise ImageError(name, "file not found")
        if path.is_dir():
            raise ImageError(name, "is a directory, not an image")
        if path.stat().st_size == 0:
            raise ImageError(name, "empty file (0 bytes)")
        fp = path
    try:
        with warnings.catch_warnings():
            # Pillow only warns between 1x and 2x its pixel limit; treat both as the same error.
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            return Image.open(fp)
    except Image.DecompressionBombWarning as exc:
        raise ImageError(name, f"image too large (decompression-bomb limit): {exc}") from None
    except UnidentifiedImageError:
        raise ImageError(name, "not an image file (unrecognised format)") from None


def finish(img: Image.Image, width: int, height: int, *, name: str = "<image>") -> np.ndarray:
    """Steps 2-5 of `load_image` on a decoded image: orientation, RGB, resize, uint8 array."""
    img.load()
    img = ImageOps.exif_transpose(img)
    img = to_rgb(img)
    if img.size != (width, height):
        img = img.resize((width, height), RESAMPLE, reducing_gap=REDUCING_GAP)
    arr = np.asarray(img, dtype=np.uint8)
    if arr.shape != (height, width, 3):  # pragma: no cover - defensive
        raise ImageError(name, f"unexpected decoded shape {arr.shape}")
    return np.ascontiguousarray(arr)


def to_rgb(img: Image.Image) -> Image.Image:
    """Convert any Pillow mode to RGB the one documented way."""
    mode = img.mode
    if mode == "RGB":
        return img
    if mode in ("I;16", "I;16L", "I;16B", "I;16N", "I"):
        # Pillow's own I;16 -> L conversion clips at 255, turning most 16-bit pictures white.
        a = np.asarray(img)
        if mode == "I":
            a = np.clip(a, 0, 65535)
        a8 = (a.astype(np.uint32) * 255 // 65535).astype(np.uint8)
        return Image.fromarray(a8, "L").convert("RGB")
    if mode == "F":
        a = np.nan_to_num(np.asarray(img, dtype=np.float32))
        a8 = np.clip(a, 0, 255).astype(np.uint8)
        return Image.fromarray(a8, "L").convert("RGB")
    if mode == "P":
        img = img.convert("RGBA") if "transparency" in img.info else img.convert("RGB")
        mode = img.mode
    if mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        rgba = img.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return img.convert("RGB")


def _from_array(arr: np.ndarray, width: int, height: int) -> np.ndarray:
    if arr.ndim == 2:
        arr = np.stack([arr] * 3, axis=-1)
    if arr.ndim != 3 or arr.shape[2] not in (3, 4):
        raise ImageError("<array>", f"expected an HxWx3 image array, got shape {arr.shape}")
    if arr.dtype != np.uint8:
        raise ImageError("<array>", f"expected a uint8 image array, got dtype {arr.dtype}")
    if arr.shape[2] == 4:
        return finish(Image.fromarray(arr, "RGBA"), width, height, name="<array>")
    if arr.shape[:2] == (height, width):
        return arr if arr.flags.c_contiguous else np.ascontiguousarray(arr)
    return finish(Image.fromarray(arr, "RGB"), width, height, name="<array>")
