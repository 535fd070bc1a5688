"""The one preprocessing path: modes, orientation, resize, errors."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from edge_runtime.errors import ImageError
from edge_runtime.inference.preprocess import load_image

pytestmark = pytest.mark.runtime


def _gradient(w=40, h=30) -> Image.Image:
    x = np.linspace(0, 255, w, dtype=np.uint8)[None, :].repeat(h, 0)
    y = np.linspace(0, 255, h, dtype=np.uint8)[:, None].repeat(w, 1)
    return Image.fromarray(np.stack([x, y, 255 - x], -1), "RGB")


def test_returns_uint8_hwc_of_target_size(tmp_path):
    p = tmp_path / "a.png"
    _gradient().save(p)
    a = load_image(p, (16, 12))
    assert a.shape == (12, 16, 3) and a.dtype == np.uint8 and a.flags.c_contiguous


def test_path_bytes_pil_and_array_agree(tmp_path):
    p = tmp_path / "a.png"
    img = _gradient()
    img.save(p)
    ref = load_image(p, (20, 20))
    np.testing.assert_array_equal(ref, load_image(p.read_bytes(), (20, 20)))
    np.testing.assert_array_equal(ref, load_image(img, (20, 20)))
    np.testing.assert_array_equal(ref, load_image(np.asarray(img), (20, 20)))


def test_frame_at_size_is_not_copied():
    frame = np.zeros((8, 10, 3), np.uint8)
    assert load_image(frame, (10, 8)) is frame


@pytest.mark.parametrize("mode", ["L", "LA", "P", "RGBA", "CMYK", "I;16", "I", "F", "1"])
def test_any_mode_becomes_rgb(mode):
    img = (
        _gradient().convert("L").convert(mode)
        if mode in ("I;16", "I", "F")
        else _gradient().convert(mode)
    )
    a = load_image(img, (8, 8))
    assert a.shape == (8, 8, 3) and a.dtype == np.uint8


def test_16bit_is_scaled_not_clipped():
    a16 = np.full((4, 4), 32768, dtype=np.uint16)
    img = Image.frombytes("I;16", (4, 4), a16.tobytes())
    out = load_image(img, (4, 4))
    assert 120 <= out.mean() <= 135  # mid-grey, not white


def test_transparency_composites_over_white():
    rgba = Image.new("RGBA", (4, 4), (0, 0, 0, 0))
    assert load_image(rgba, (4, 4)).min() == 255


def test_exif_orientation_is_applied(tmp_path):
    img = Image.new("RGB", (40, 20), (255, 0, 0))
    img.paste((0, 0, 255), (0, 0, 20, 20))  # left half blue
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 CW to display
    p = tmp_path / "o.jpg"
    img.save(p, exif=exif, quality=95)
    a = load_image(p, (20, 40), draft=False)
    # After rotation the picture is 20 wide, 40 high and the blue half is on top.
    assert a[5, 10, 2] > 200 and a[35, 10, 0] > 200


def test_jpeg_draft_decodes_close_to_full(tmp_path):
    rng = np.random.default_rng(0)
    big = Image.fromarray(rng.integers(0, 255, (60, 80, 3), dtype=np.uint8)).resize(
        (1600, 1200), Image.BICUBIC
    )
    p = tmp_path / "big.jpg"
    big.save(p, quality=90)
    fast = load_image(p, (64, 64)).astype(int)
    full = load_image(p, (64, 64), draft=False).astype(int)
    assert np.abs(fast - full).mean() < 3.0


@pytest.mark.parametrize(
    "content, problem",
    [(b"", "empty"), (b"not an image at all", "not an image"), (None, "not found")],
)
def test_bad_files_name_the_file_and_problem(tmp_path, content, problem):
    p = tmp_path / "bad.jpg"
    if content is not None:
        p.write_bytes(content)
    with pytest.raises(ImageError) as ei:
        load_image(p, (8, 8))
    assert str(p) in str(ei.value) and problem in str(ei.value)


def test_truncated_jpeg(tmp_path):
    buf = io.BytesIO()
    _gradient(200, 200).save(buf, "JPEG")
    p = tmp_path / "t.jpg"
    p.write_bytes(buf.getvalue()[: len(buf.getvalue()) // 2])
    with pytest.raises(ImageError, match="cannot decode"):
        load_image(p, (8, 8))


def test_decompression_bomb(tmp_path, monkeypatch):
    p = tmp_path / "bomb.png"
    _gradient(100, 100).save(p)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)
    with pytest.raises(ImageError, match="decompression-bomb"):
        load_image(p, (8, 8))


def test_bad_arrays():
    with pytest.raises(ImageError, match="uint8"):
        load_image(np.zeros((4, 4, 3), np.float32), (4, 4))
    with pytest.raises(ImageError, match="HxWx3"):
        load_image(np.zeros((4, 4, 5), np.uint8), (4, 4))


def test_large_pictures_are_reduced_by_an_integer_factor_first():
    """A 1080p frame is box-reduced while it stays >= 2x the target, then resized with the
    antialiased filter: a file and a frame of the same pixels get the same result."""
    rng = np.random.default_rng(1)
    frame = np.asarray(
        Image.fromarray(rng.integers(0, 255, (27, 48, 3), dtype=np.uint8)).resize(
            (1920, 1080), Image.Resampling.BICUBIC
        )
    )
    out = load_image(frame, (96, 96))
    # by hand: 1920/96/2 = 10 and 1080/96/2 = 5.6 -> reduce (10, 5) to 192x216, then bilinear
    by_hand = Image.fromarray(frame).reduce((10, 5)).resize((96, 96), Image.Resampling.BILINEAR)
    np.testing.assert_array_equal(out, np.asarray(by_hand))
    plain = np.asarray(Image.fromarray(frame).resize((96, 96), Image.Resampling.BILINEAR))
    assert not np.array_equal(out, plain)  # the reduction is really applied
    assert np.abs(out.astype(int) - plain).mean() < 4  # and close to the plain resize
    small = rng.integers(0, 255, (48, 64, 3), dtype=np.uint8)  # < 4x the target: no reduction
    np.testing.assert_array_equal(
        load_image(small, (32, 32)),
        np.asarray(Image.fromarray(small).resize((32, 32), Image.Resampling.BILINEAR)),
    )


def test_the_recorded_description_names_the_reduction():
    from edge_runtime.inference.preprocess import PREPROCESSING, REDUCING_GAP

    assert PREPROCESSING["version"] >= 2 and str(REDUCING_GAP) in PREPROCESSING["reduce"]
