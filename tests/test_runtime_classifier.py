"""The runtime Classifier on the fixture models: inputs, errors, quantization, draft, memory.

Runs without TensorFlow (numpy, pillow, pytest and one interpreter package); the models come
from `$EDGE_FIXTURE_MODELS` or are built by the `fixture_models` fixture.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import io
import resource

import numpy as np
import pytest
from PIL import Image

from edge_runtime import Classifier, ImageError, LabelsError, ModelError, Prediction
from edge_runtime.inference.bench import benchmark, draft_comparison, thread_sweep

pytestmark = pytest.mark.runtime

HAS_TF = importlib.util.find_spec("tensorflow") is not None
BACKENDS = [
    None,
    pytest.param(
        "tensorflow", marks=pytest.mark.skipif(not HAS_TF, reason="TensorFlow not installed")
    ),
]


@pytest.fixture(scope="module")
def frames(fixture_models):
    return np.load(fixture_models["float32"].parent / "reference_frames.npy")


@pytest.fixture(scope="module")
def clf(fixture_models):
    return Classifier.from_file(fixture_models["float32"])


@pytest.fixture(scope="module")
def clf8(fixture_models):
    return Classifier.from_file(fixture_models["int8"])


@pytest.mark.parametrize("backend", BACKENDS)
def test_float_model_matches_keras(fixture_models, frames, backend):
    c = Classifier.from_file(fixture_models["float32"], backend=backend)
    keras = np.load(fixture_models["float32"].parent / "keras_scores.npy")
    np.testing.assert_allclose(c.scores(frames), keras, atol=1e-4)
    assert c.labels == ["red", "green", "blue"]
    np.testing.assert_allclose(c.thresholds, [0.5, 0.4, 0.6])
    assert c.input_size == (32, 32) and c.input_dtype == np.float32
    assert c.metadata["arch"] == "fixture-cnn"


@pytest.mark.parametrize("mode", ["float16", "dynamic", "int8"])
@pytest.mark.parametrize("backend", BACKENDS)
def test_quantized_models_agree_with_float(fixture_models, frames, mode, backend):
    ref = Classifier.from_file(fixture_models["float32"], backend=backend).scores(frames)
    c = Classifier.from_file(fixture_models[mode], backend=backend)
    got = c.scores(frames)
    assert got.dtype == np.float32 and got.shape == ref.shape
    assert np.abs(got - ref).max() < 0.05  # int8 output steps are 1/256
    if mode == "int8":
        assert c.input_dtype == np.uint8


def test_every_input_kind(clf, frames, tmp_path):
    frame = frames[2]
    expected = clf.predict(frame)
    assert isinstance(expected, Prediction) and expected.source is None
    png = tmp_path / "f.png"
    Image.fromarray(frame).save(png)
    for x in (png, str(png), png.read_bytes(), Image.open(png), frame.copy()):
        p = clf.predict(x)
        assert p.labels == expected.labels
        assert max(abs(p.scores[k] - expected.scores[k]) for k in p.scores) < 1e-6
    assert clf.predict(str(png)).source == str(png)
    many = clf.predict([png, frame, png.read_bytes()])
    assert isinstance(many, list) and len(many) == 3 and many[0].source == str(png)
    batch = clf.predict(frames[:3])  # a 4-D array is a batch
    assert [p.labels for p in batch] == [clf.predict(f).labels for f in frames[:3]]
    assert clf.predict([]) == []
    d = expected.to_dict()
    assert set(d) == {"file", "scores", "labels"} and list(d["scores"]) == clf.labels


def test_frame_of_other_size_is_resized(clf, frames):
    big = np.asarray(Image.fromarray(frames[0]).resize((64, 48)))
    assert set(clf.predict(big).scores) == set(clf.labels)


def test_labels_sorted_by_score_and_thresholds_override(clf, frames):
    p = clf.predict(frames[7])  # all three labels present in this reference frame
    assert p.labels == sorted(p.labels, key=p.scores.__getitem__, reverse=True)
    assert clf.predict(frames[7], threshold=1.0).labels == []
    assert set(clf.predict(frames[7], threshold=0.0).labels) == set(clf.labels)
    only = clf.predict(frames[7], threshold=1.0, thresholds={"red": 0.0})
    assert only.labels == ["red"]
    with pytest.raises(LabelsError, match="unknown label"):
        clf.predict(frames[0], thresholds={"purple": 0.5})


def test_prediction_is_frozen(clf, frames):
    p = clf.predict(frames[0])
    with pytest.raises(dataclasses.FrozenInstanceError):
        p.source = "x"  # type: ignore[misc]


def test_outputs_are_copied_out_of_interpreter_memory(clf8, frames):
    a = clf8.scores(frames[:1])
    before = a.copy()
    clf8.scores(frames[5:6])
    np.testing.assert_array_equal(a, before)


def test_dynamic_batch_and_back(clf8, frames):
    one_by_one = np.concatenate([clf8.scores(f[None]) for f in frames])
    np.testing.assert_allclose(clf8.scores(frames), one_by_one, atol=1e-6)
    # After a batch call the single-frame path must still work (tensor resized back).
    np.testing.assert_allclose(
        list(clf8.predict(frames[3]).scores.values()), one_by_one[3], atol=1e-6
    )


def test_plain_model_gets_generic_labels(fixture_models, frames):
    c = Classifier.from_file(fixture_models["plain"])
    assert c.labels == ["label_0", "label_1", "label_2"] and c.metadata == {}
    np.testing.assert_allclose(c.thresholds, 0.5)
    assert c.predict(frames[0]).scores.keys() == {"label_0", "label_1", "label_2"}


def test_from_bytes(fixture_models, frames):
    c = Classifier.from_bytes(fixture_models["int8"].read_bytes(), name="int8")
    assert c.model_size == fixture_models["int8"].stat().st_size
    assert c.predict(frames[0]).labels


def test_model_errors(fixture_models, tmp_path):
    with pytest.raises(ModelError, match="input is not an image: shape"):
        Classifier.from_file(fixture_models["vector"])
    with pytest.raises(ModelError, match="not found"):
        Classifier.from_file(tmp_path / "missing.tflite")
    text = tmp_path / "notes.tflite"
    text.write_text("hello, not a model\n")
    with pytest.raises(ModelError, match="not a TFLite model"):
        Classifier.from_file(text)
    data = fixture_models["float32"].read_bytes()
    for bad in (data[:100], data[:8] + bytes(400), b""):
        with pytest.raises(ModelError) as info:
            Classifier.from_bytes(bad)
        assert "\n" not in str(info.value)


def test_preprocessing_version_mismatch_warns(fixture_models):
    from edge_runtime.modelfile.metadata import embed, read

    data = fixture_models["float32"].read_bytes()
    meta = read(data)
    meta["preprocessing"]["version"] = 999
    with pytest.warns(UserWarning, match="preprocessing version 999"):
        Classifier.from_bytes(embed(data, meta))


def _jpeg(img: Image.Image, **kw) -> bytes:
    buf = io.BytesIO()
    img.save(buf, "JPEG", **kw)
    return buf.getvalue()


def test_bad_images_raise_image_error(clf, frames, tmp_path, monkeypatch):
    good = _jpeg(Image.fromarray(frames[0]).resize((200, 200)), quality=90)
    cases = {
        "truncated.jpg": good[: len(good) // 3],
        "empty.jpg": b"",
        "text.jpg": b"this is not an image\n",
    }
    for name, data in cases.items():
        (tmp_path / name).write_bytes(data)
        with pytest.raises(ImageError) as info:
            clf.predict(tmp_path / name)
        assert name in str(info.value) and "\n" not in str(info.value)
    with pytest.raises(ImageError, match="file not found"):
        clf.predict(tmp_path / "missing.jpg")
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)
    with pytest.raises(ImageError, match="decompression-bomb"):
        clf.predict(good)


def odd_mode_images(frame: np.ndarray) -> dict[str, Image.Image]:
    """16-bit greyscale, CMYK, palette (with and without transparency) and RGBA images."""
    rgb = Image.fromarray(frame)
    grey16 = Image.fromarray(frame[..., 0].astype(np.uint16) * 257)  # mode I;16
    rgba = rgb.convert("RGBA")
    rgba.putalpha(128)
    pal_t = rgb.convert("P")
    pal_t.info["transparency"] = 0
    return {
        "grey16.png": grey16,
        "cmyk.jpg": rgb.convert("CMYK"),
        "palette.png": rgb.convert("P"),
        "palette_t.png": pal_t,
        "rgba.png": rgba,
    }


def test_odd_image_modes_work(clf, frames, tmp_path):
    for name, img in odd_mode_images(frames[7]).items():
        img.save(tmp_path / name)
        p = clf.predict(tmp_path / name)
        assert set(p.scores) == set(clf.labels), name
        assert all(0.0 <= s <= 1.0 for s in p.scores.values())


def large_jpeg(path, frame: np.ndarray, size=(2000, 1500)) -> None:
    """A photo-like large JPEG: the frame upscaled smoothly, with mild seeded noise."""
    big = np.asarray(Image.fromarray(frame).resize(size, Image.Resampling.BICUBIC), dtype=np.int16)
    noise = np.random.default_rng(0).integers(-6, 7, size=big.shape, dtype=np.int16)
    Image.fromarray(np.clip(big + noise, 0, 255).astype(np.uint8)).save(path, quality=92)


DRAFT_TOLERANCE = 0.05  # max |score(draft) - score(full decode)| accepted on a 2000x1500 JPEG


@pytest.mark.parametrize("mode", ["float32", "int8"])
def test_draft_decoding_close_to_full_decode(fixture_models, frames, tmp_path, mode):
    path = tmp_path / "big.jpg"
    large_jpeg(path, frames[6])
    c = Classifier.from_file(fixture_models[mode])
    a, b = c.predict(path, draft=True), c.predict(path, draft=False)
    assert max(abs(a.scores[k] - b.scores[k]) for k in a.scores) < DRAFT_TOLERANCE
    r = draft_comparison(c, path, runs=1)
    assert r.image_size == (2000, 1500) and r.max_abs_score_diff < DRAFT_TOLERANCE
    assert set(r.to_dict()) >= {"draft_ms", "full_ms", "speedup", "max_abs_score_diff"}


def test_memory_flat_over_many_predictions(clf8, frames, tmp_path):
    png = tmp_path / "m.png"
    Image.fromarray(frames[1]).save(png)
    for _ in range(200):  # warm-up: allocator pools, caches
        clf8.predict(frames[1])
        clf8.predict(png)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    for i in range(2000):
        clf8.predict(frames[i % len(frames)])
        if i % 10 == 0:
            clf8.predict(png)
    growth_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before
    assert growth_kib < 16 * 1024, f"peak RSS grew by {growth_kib} KiB over 2,000 predictions"


def test_bench_results(fixture_models, frames, tmp_path):
    r = benchmark(fixture_models["int8"], runs=5, warmup=1)
    d = r.to_dict()
    assert (
        d["latency"]["runs"] == 5
        and d["latency"]["min"] <= d["latency"]["p50"] <= d["latency"]["max"]
    )
    assert set(d["stages"]) == {"decode", "resize", "invoke", "postprocess"}
    png = tmp_path / "b.png"
    Image.fromarray(frames[0]).resize((320, 240)).save(png)
    sweep = thread_sweep(fixture_models["int8"], [1, 2], image=png, runs=3, warmup=0)
    assert [s.threads for s in sweep] == [1, 2] and sweep[0].stages["decode"] > 0


def test_truncated_models_raise_not_crash(fixture_models):
    # tflite-runtime 2.14 has no flatbuffer verifier: without our bounds check these segfault.
    data = fixture_models["int8"].read_bytes()
    for cut in range(0, len(data), 97):
        try:
            Classifier.from_bytes(data[:cut])
        except ModelError as exc:
            assert "\n" not in str(exc)


@pytest.mark.parametrize(
    "meta",
    [
        {"labels": ["a", "b", "c"], "thresholds": ["x", 0.5, 0.5]},
        {"labels": ["a", "b", "c"], "input": "not a dict"},
        ["a", "list", "not", "an", "object"],
    ],
)
def test_malformed_metadata_is_a_model_error(fixture_models, meta):
    import json
    import zipfile

    from edge_runtime.modelfile import metadata as md

    flat = md.strip(fixture_models["float32"].read_bytes())
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr(md.MEMBER, json.dumps(meta))
    with pytest.raises(ModelError):
        Classifier.from_bytes(flat + buf.getvalue())
