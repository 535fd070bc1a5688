"""Runtime contracts that are easy to break silently: backend choice, input quantization, the
flatbuffer bounds check, fixed batch sizes, strict JSON, `eval` on unreadable images."""

from __future__ import annotations

import csv
import importlib.util
import json
import math
import os

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from edge_runtime import BackendError, Classifier, ModelError, atomic
from edge_runtime.cli import main_group
from edge_runtime.inference import backend
from edge_runtime.inference.classifier import input_converter

pytestmark = pytest.mark.runtime


def _first_importable() -> str:
    return next(
        name
        for name, dotted in backend.BACKENDS.items()
        if importlib.util.find_spec(dotted.split(".")[0]) is not None
    )


def test_the_expected_backend_is_chosen(fixture_models):
    # CI names the package each lean environment must use; elsewhere the documented order rules.
    expected = os.environ.get("EDGE_EXPECT_BACKEND") or _first_importable()
    assert Classifier.from_file(fixture_models["float32"]).backend == expected
    assert backend.interpreter_class(None)[1] == expected


def test_backend_selection_errors(monkeypatch):
    with pytest.raises(BackendError, match="unknown backend 'nope'; choose one of ai-edge-litert"):
        backend.interpreter_class("nope")
    missing = next(
        (
            n
            for n, d in backend.BACKENDS.items()
            if importlib.util.find_spec(d.split(".")[0]) is None
        ),
        None,
    )
    if missing is not None:  # a package this environment lacks: a clear error naming it
        with pytest.raises(BackendError, match=f"{missing}: ModuleNotFoundError"):
            backend.interpreter_class(missing)
    monkeypatch.setattr(backend, "BACKENDS", {"ghost": "no_such_interpreter_pkg.interpreter"})
    with pytest.raises(
        BackendError, match="no TFLite interpreter available .*pip install ai-edge-litert"
    ):
        backend.interpreter_class(None)


@pytest.mark.parametrize(
    "dtype, scale, zero_point",
    [(np.uint8, 2.0, 10), (np.uint8, 0.5, 0), (np.int8, 1.0, -128), (np.int8, 0.75, 3)],
)
def test_input_quantization_with_real_scales(dtype, scale, zero_point):
    """real = scale * (q - zero_point): the quantized pixel dequantizes to within half a step."""
    to_input = input_converter({"dtype": dtype, "quantization": (scale, zero_point)})
    pixels = np.arange(256, dtype=np.uint8).reshape(1, 16, 16, 1).repeat(3, axis=3)
    q = to_input(pixels)
    assert q.dtype == dtype and q.shape == pixels.shape
    info = np.iinfo(dtype)
    real = scale * (q.astype(np.float64) - zero_point)
    representable = (pixels / scale + zero_point >= info.min) & (
        pixels / scale + zero_point <= info.max
    )
    assert np.all(np.abs(real - pixels)[representable] <= scale / 2 + 1e-9)
    assert np.all(
        (q == info.max) | (q == info.min) | representable
    )  # the rest is clipped, not wrapped


def test_our_uint8_input_goes_in_untouched():
    frame = np.random.default_rng(0).integers(0, 256, (1, 4, 4, 3), dtype=np.uint8)
    assert input_converter({"dtype": np.uint8, "quantization": (1.0, 0)})(frame) is frame


def test_truncated_models_are_refused_by_our_bounds_check(fixture_models):
    """Every cut inside the flatbuffer is caught by `check_structure` itself (its own message),
    before any interpreter sees the bytes: tflite-runtime 2.14 would segfault on them."""
    from edge_runtime.modelfile import metadata

    flat = metadata.strip(fixture_models["int8"].read_bytes())
    for cut in range(8, len(flat), 61):
        with pytest.raises(ModelError, match="corrupt or truncated TFLite model"):
            Classifier.from_bytes(flat[:cut], name="cut")


def test_fixed_batch_over_one_is_refused(tmp_path):
    tf = pytest.importorskip("tensorflow")
    inp = tf.keras.Input((8, 8, 3), batch_size=2)
    out = tf.keras.layers.Dense(2, activation="sigmoid")(
        tf.keras.layers.GlobalAveragePooling2D()(inp)
    )
    data = tf.lite.TFLiteConverter.from_keras_model(tf.keras.Model(inp, out)).convert()
    with pytest.raises(ModelError, match="fixed batch size 2 is not supported"):
        Classifier.from_bytes(data)


def test_json_is_strict_nan_and_inf_become_null(tmp_path):
    obj = {"a": math.nan, "b": np.float32("inf"), "c": np.array([1.0, np.nan]), "d": [-math.inf]}
    text = atomic.dumps(obj)
    assert json.loads(text) == {"a": None, "b": None, "c": [1.0, None], "d": [None]}
    assert "NaN" not in text and "Infinity" not in text
    assert json.loads(atomic.write_json(tmp_path / "r.json", obj).read_text())["a"] is None


def test_eval_reports_unreadable_images_and_exits_1(fixture_models, tmp_path):
    frames = np.load(fixture_models["float32"].parent / "reference_frames.npy")
    with open(tmp_path / "labels.csv", "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["filename", "red", "green", "blue"])
        for i, f in enumerate(frames[:4]):
            Image.fromarray(f).save(tmp_path / f"{i}.png")
            w.writerow([f"{i}.png", 1, 0, 0])
        good = (tmp_path / "0.png").read_bytes()
        (tmp_path / "broken.png").write_bytes(good[: len(good) // 2])  # a truncated PNG
        w.writerow(["broken.png", 0, 1, 0])
    r = CliRunner().invoke(
        main_group, ["eval", str(fixture_models["int8"]), str(tmp_path / "labels.csv"), "--json"]
    )
    assert r.exit_code == 1, r.output
    rep = json.loads(r.stdout)  # the four good images are still evaluated
    assert rep["n_samples"] == 4 and rep["skipped"] == 1
    errors = [line for line in r.stderr.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1 and "broken.png" in errors[0] and "cannot decode" in errors[0]


def test_eval_min_map_is_a_quality_gate(fixture_models, tmp_path):
    """The fixture model has learned its task: a true CSV passes --min-map, shuffled truth fails it."""
    from make_fixture_models import LABELS, synthetic_images

    x, y = synthetic_images(40, seed=7)
    rows = {"true": y, "shuffled": np.random.default_rng(0).permutation(y)}
    for name, labels in rows.items():
        with open(tmp_path / f"{name}.csv", "w", newline="") as fh:
            w = csv.writer(fh)
            w.writerow(["filename", *LABELS])
            for i, (img, row) in enumerate(zip(x, labels)):
                Image.fromarray(img).save(tmp_path / f"{i}.png")
                w.writerow([f"{i}.png", *(int(v) for v in row)])
    model = str(fixture_models["int8"])
    ok = CliRunner().invoke(
        main_group, ["eval", model, str(tmp_path / "true.csv"), "--min-map", "0.8", "--json"]
    )
    assert ok.exit_code == 0, ok.output
    assert json.loads(ok.stdout)["min_map"] == {"required": 0.8, "passed": True}
    bad = CliRunner().invoke(
        main_group, ["eval", model, str(tmp_path / "shuffled.csv"), "--min-map", "0.8", "--json"]
    )
    assert bad.exit_code == 1 and json.loads(bad.stdout)["min_map"]["passed"] is False
    assert (
        bad.stderr.strip().splitlines()[-1].startswith("Error: mAP ")
        and "--min-map 0.8" in bad.stderr
    )
