"""The exporter end to end on a real (tiny) trained model: modes, metadata, the gate, errors."""
from __future__ import annotations

import importlib
import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

pytest.importorskip("tensorflow")

from edge_runtime import metadata  # noqa: E402
from edge_runtime.classifier import Classifier  # noqa: E402
from exporter import ExportConfig, QuantMode, export  # noqa: E402
export_module = importlib.import_module("exporter.export")  # the module, not the function
from exporter.cli import export_cmd  # noqa: E402

pytestmark = pytest.mark.slow


# The fixture model trains for seconds and stays weak (val mAP ~0.6, and not bit-reproducible
# between runs), so many of its scores sit near a threshold and its parity set is small (one
# flip = 0.8% of 128 images): whether dynamic and int8 pass their decision and mAP tolerances is
# chance here, so those tests open that part of the gate and check everything else. The default
# gates are met by the demo model (benchmarks/results/report.md, section 3); float32 and float16
# are held to their defaults, and the gate's failures are tested on float32 below.
OPEN = {"min_agreement": 0.0, "max_map_drop": 1.0}
WEAK_MODEL = {"dynamic": OPEN, "int8": OPEN}


def _export(trained_run, tmp_path, mode, **kw):
    out = tmp_path / f"{mode}.tflite"
    kw.setdefault("overrides", WEAK_MODEL.get(mode, {}))
    return export(ExportConfig(run_dir=str(trained_run), out=str(out), quant=mode, calibration_size=64, **kw),
                  log=lambda m: None)


@pytest.mark.parametrize("mode", ["float32", "float16", "dynamic", "int8"])
def test_every_mode_passes_its_gate_and_embeds_metadata(trained_run, tmp_path, mode):
    result = _export(trained_run, tmp_path, mode)
    assert result.passed and Path(result.out).is_file()
    manifest = json.loads((Path(trained_run) / "manifest.json").read_text())
    meta = metadata.read(result.out)
    assert meta["labels"] == manifest["labels"] and meta["quantization"] == mode
    assert meta["input"]["dtype"] == ("uint8" if mode == "int8" else "float32")
    assert meta["preprocessing"] == manifest["preprocessing"] and meta["parity"]["passed"] is True
    assert len(meta["thresholds"]) == len(meta["labels"])
    assert not any(op.startswith("Flex") for op in result.ops)
    assert json.loads(Path(result.report_path).read_text())["passed"] is True
    # The device path reproduces the scores the gate judged, with the embedded thresholds.
    clf = Classifier.from_file(result.out)
    assert clf.labels == manifest["labels"]
    np.testing.assert_allclose(clf.thresholds, meta["thresholds"])


def test_int8_takes_uint8_and_rebalanced_thresholds(trained_run, tmp_path):
    result = _export(trained_run, tmp_path, "int8")
    clf = Classifier.from_file(result.out)
    assert np.dtype(clf.input_dtype) == np.uint8
    assert "re-calibrated" in result.metadata["thresholds_source"]


@pytest.mark.parametrize("backend", ["ai-edge-litert", "tensorflow"])
def test_exported_file_loads_in_each_interpreter(trained_run, tmp_path, backend):
    result = _export(trained_run, tmp_path, "int8")
    frame = np.zeros((32, 32, 3), np.uint8)
    pred = Classifier.from_file(result.out, backend=backend).predict(frame)
    assert set(pred.scores) == set(result.metadata["labels"])


def _perturbed_convert(real):
    def convert(model, mode, representative=None, **kw):
        import keras

        broken = keras.models.clone_model(model)
        rng = np.random.default_rng(0)
        broken.set_weights([w + rng.normal(0, 0.5, w.shape).astype(w.dtype) for w in model.get_weights()])
        return real(broken, mode, representative, **kw)

    return convert


def test_gate_fails_on_perturbed_weights_and_writes_nothing(trained_run, tmp_path, monkeypatch):
    out = tmp_path / "model.tflite"
    out.write_bytes(b"previous good model")
    monkeypatch.setattr(export_module, "convert", _perturbed_convert(export_module.convert))
    res = CliRunner().invoke(export_cmd, [str(trained_run), "--quant", "float32", "--out", str(out),
                                          "--calibration-size", "32"])
    assert res.exit_code == 1, res.output
    assert "FAIL" in res.output and "FAILED:" in res.output
    assert out.read_bytes() == b"previous good model"  # never replaced by an unverified model
    report = json.loads((tmp_path / "model.parity.json").read_text())
    assert report["passed"] is False and report["parity"]["failures"]


def test_gate_fails_when_the_device_preprocesses_differently(trained_run, tmp_path, monkeypatch):
    real = export_module._device_scores

    def skewed(data, images, config):  # a different resize on the device side only
        from PIL import Image

        h, w = images.shape[1:3]
        small = [np.asarray(Image.fromarray(im).resize((w // 4, h // 4), Image.NEAREST).resize((w, h), Image.NEAREST))
                 for im in images]
        return real(data, np.stack(small), config)

    monkeypatch.setattr(export_module, "_device_scores", skewed)
    res = CliRunner().invoke(export_cmd, [str(trained_run), "--quant", "float32", "--out", str(tmp_path / "m.tflite")])
    assert res.exit_code == 1
    assert not (tmp_path / "m.tflite").exists()


def test_auto_keeps_the_smallest_passing_mode_and_explains_failures(trained_run, tmp_path):
    res = CliRunner().invoke(export_cmd, [str(trained_run), "--quant", "auto", "--out", str(tmp_path / "a.tflite"),
                                          "--json", "--calibration-size", "32"])
    assert res.exit_code == 0, res.output
    d = json.loads(res.stdout)
    assert d["attempts"][0]["mode"] == "int8" and d["mode"] == d["attempts"][-1]["mode"]
    impossible = CliRunner().invoke(export_cmd, [str(trained_run), "--quant", "auto", "--out",
                                                 str(tmp_path / "b.tflite"), "--max-map-drop", "-1", "--json"])
    assert impossible.exit_code == 1
    d = json.loads(impossible.stdout)
    assert [(a["mode"], a["per_channel"]) for a in d["attempts"]] == [
        ("int8", False), ("int8", True), ("dynamic", None), ("float16", None), ("float32", None)]
    assert all("mAP drop" in a["reason"] for a in d["attempts"]) and d["out"] is None
    assert not (tmp_path / "b.tflite").exists()


def _one_line_error(res):
    """Exit 2, and stderr ends in one `Error: ...` line (after any progress lines), no traceback."""
    assert res.exit_code == 2, res.output
    errors = [line for line in res.stderr.splitlines() if line.startswith("Error: ")]
    assert len(errors) == 1 and res.stderr.splitlines()[-1] == errors[0]
    assert "Traceback" not in res.output and res.stdout == ""
    return errors[0]


def test_clear_errors(trained_run, tmp_path):
    run = CliRunner()
    assert "not found" in _one_line_error(run.invoke(export_cmd, [str(tmp_path / "nope")]))

    bad = tmp_path / "corrupt"
    shutil.copytree(trained_run, bad)
    (bad / "model.keras").write_bytes(b"not a zip")
    assert "cannot load Keras model" in _one_line_error(run.invoke(export_cmd, [str(bad), "--out", str(tmp_path / "x.tflite")]))

    mism = tmp_path / "mismatch"
    shutil.copytree(trained_run, mism)
    m = json.loads((mism / "manifest.json").read_text())
    m["labels"] = m["labels"][:-1]
    (mism / "manifest.json").write_text(json.dumps(m))
    assert "outputs" in _one_line_error(run.invoke(export_cmd, [str(mism), "--out", str(tmp_path / "x.tflite")]))

    nocal = tmp_path / "nocal"
    shutil.copytree(trained_run, nocal)
    (nocal / "train_split.csv").unlink()
    assert "calibration" in _one_line_error(run.invoke(export_cmd, [str(nocal), "--out", str(tmp_path / "x.tflite")]))
    # ... which only int8 needs: float modes export without calibration images.
    ok = run.invoke(export_cmd, [str(nocal), "--quant", "float32", "--out", str(tmp_path / "f.tflite")])
    assert ok.exit_code == 0, ok.output
    assert metadata.read(tmp_path / "f.tflite")["calibration_images"] is None

    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    res = run.invoke(export_cmd, [str(trained_run), "--quant", "float32", "--out", str(blocker / "m.tflite")])
    assert "cannot write" in _one_line_error(res)

    assert not (tmp_path / "x.tflite").exists()


def test_softmax_model_is_refused(trained_run, tmp_path):
    import keras

    soft = tmp_path / "softmax"
    shutil.copytree(trained_run, soft)
    model = keras.models.load_model(soft / "model.keras", compile=False)
    cfg = model.get_config()
    cfg["layers"][-1]["config"]["activation"] = "softmax"
    m2 = keras.Model.from_config(cfg)
    m2.set_weights(model.get_weights())
    m2.save(soft / "model.keras")
    res = CliRunner().invoke(export_cmd, [str(soft), "--out", str(tmp_path / "s.tflite")])
    assert "sigmoid" in _one_line_error(res)


def test_cli_as_a_real_subprocess(trained_run, tmp_path):
    out = tmp_path / "sub.tflite"
    proc = subprocess.run([sys.executable, "-c", "from exporter.cli import main; main()", str(trained_run),
                           "--quant", "dynamic", "--out", str(out), "--json", "--min-agreement", "0", "--max-map-drop", "1"],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert json.loads(proc.stdout)["passed"] is True and out.is_file()
    help_ = subprocess.run([sys.executable, "-c", "from exporter.cli import main; main()", "--help"],
                           capture_output=True, text=True, timeout=120)
    assert "Examples:" in help_.stdout


def test_per_tensor_int8_is_smaller_and_recorded(trained_run, tmp_path):
    channel = _export(trained_run, tmp_path / "c", "int8", per_channel=True)
    tensor = _export(trained_run, tmp_path / "t", "int8", per_channel=False)
    assert tensor.size_bytes < channel.size_bytes
    assert metadata.read(tensor.out)["per_channel"] is False and metadata.read(channel.out)["per_channel"] is True


def test_training_and_device_see_the_same_pixels_end_to_end(trained_run, tmp_path):
    """Train/serve skew check across packages: a file's scores on the device (float32 export,
    `Classifier.predict(path)`) equal Keras's scores on the trainer's decoded array of that file.
    Large JPEGs with EXIF rotation exercise reduced-scale decoding and orientation on both sides."""
    from PIL import Image

    from edge_common.images import load_images

    exported = _export(trained_run, tmp_path, "float32")
    manifest = json.loads((Path(trained_run) / "manifest.json").read_text())
    rng = np.random.default_rng(0)
    paths = []
    for i in range(6):
        img = Image.fromarray(rng.integers(0, 255, (30, 40, 3), dtype=np.uint8)).resize((800, 600), Image.BICUBIC)
        exif = Image.Exif()
        exif[0x0112] = (1, 6, 8)[i % 3]
        paths.append(tmp_path / f"photo{i}.jpg")
        img.save(paths[-1], quality=90, exif=exif)
    x, failures = load_images(paths, tuple(manifest["input_size"]))  # what training would feed
    assert not failures
    import keras

    model = keras.models.load_model(Path(trained_run) / "model.keras", compile=False)
    keras_scores = model.predict(x.astype(np.float32), verbose=0)
    preds = Classifier.from_file(exported.out).predict([str(p) for p in paths])
    device = np.array([[p.scores[label] for label in manifest["labels"]] for p in preds])
    np.testing.assert_allclose(device, keras_scores, atol=1e-4)


def test_int8_tries_per_tensor_first_and_falls_back_to_per_channel(trained_run, tmp_path, monkeypatch):
    """Default int8: the smaller per-tensor file if it passes the gate, else per-channel."""
    res = _export(trained_run, tmp_path / "a", "int8")
    assert [(a.mode, a.per_channel) for a in res.attempts][0] == ("int8", False)
    from dataclasses import replace

    real = export_module.check_parity
    calls: list[str] = []

    def per_tensor_fails(*args):
        report = real(*args)
        calls.append(report.mode)
        if len(calls) == 1:  # the first candidate (per-tensor) is made to fail its gate
            return replace(report, failures=["forced failure for the test"])
        return report

    monkeypatch.setattr(export_module, "check_parity", per_tensor_fails)
    res = _export(trained_run, tmp_path / "b", "int8")
    assert [(a.mode, a.per_channel, a.passed) for a in res.attempts] == [("int8", False, False), ("int8", True, True)]
    assert res.per_channel is True and metadata.read(res.out)["per_channel"] is True
