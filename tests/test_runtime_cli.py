"""`edge-infer` end to end: inputs, outputs, exit codes, subcommands, --watch, no TensorFlow.

Runs without TensorFlow. Driven through click's CliRunner and, at least once, as a real process.
"""

from __future__ import annotations

import csv
import importlib.util
import io
import json
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from edge_runtime.cli import main_group

pytestmark = pytest.mark.runtime

HAS_TF = importlib.util.find_spec("tensorflow") is not None


def run(*args: str, input: str | None = None):
    return CliRunner().invoke(main_group, [str(a) for a in args], input=input)


def error_lines(result) -> list[str]:
    return [line for line in result.stderr.splitlines() if line.startswith("Error:")]


@pytest.fixture(scope="module")
def images(fixture_models, tmp_path_factory) -> Path:
    """A folder of good images (nested) built from the reference frames."""
    frames = np.load(fixture_models["float32"].parent / "reference_frames.npy")
    root = tmp_path_factory.mktemp("images")
    (root / "sub").mkdir()
    for i, f in enumerate(frames[:4]):
        Image.fromarray(f).save(root / f"img{i}.png")
    Image.fromarray(frames[4]).resize((64, 64)).save(root / "sub" / "deep.jpg", quality=95)
    (root / "notes.txt").write_text("not an image, and not picked up from a directory")
    return root


def test_default_command_table_and_json(fixture_models, images):
    model = fixture_models["int8"]
    r = run(model, images / "img0.png", images / "img1.png")
    assert r.exit_code == 0, r.output
    lines = r.stdout.splitlines()
    assert "red" in lines[0] and len(lines) == 3
    r = run(model, "--json", images)
    assert r.exit_code == 0, r.output
    rows = [json.loads(line) for line in r.stdout.splitlines()]
    assert len(rows) == 5  # four PNGs + the nested JPEG; notes.txt is not an image
    assert all(set(row) == {"file", "scores", "labels"} for row in rows)
    assert set(rows[0]["scores"]) == {"red", "green", "blue"}
    same = run("predict", model, "--json", images)  # the explicit subcommand is the same
    assert same.stdout == r.stdout


def test_glob_stdin_and_csv(fixture_models, images):
    model = fixture_models["float32"]
    r = run(model, str(images / "img*.png"), "--csv")
    assert r.exit_code == 0, r.output
    rows = list(csv.reader(io.StringIO(r.stdout)))
    assert rows[0] == ["file", "red", "green", "blue", "labels"] and len(rows) == 5
    r = run(model, "-", "--json", input=f"{images / 'img0.png'}\n\n{images / 'sub' / 'deep.jpg'}\n")
    assert r.exit_code == 0, r.output
    assert [json.loads(x)["file"] for x in r.stdout.splitlines()] == [
        str(images / "img0.png"),
        str(images / "sub" / "deep.jpg"),
    ]
    r = run(model, str(images / "nothing*.png"))
    assert r.exit_code == 1 and "no files match" in r.stderr


def test_threshold_option(fixture_models, images):
    r = run(fixture_models["float32"], images / "img0.png", "--json", "--threshold", "0")
    assert json.loads(r.stdout)["labels"] and len(json.loads(r.stdout)["labels"]) == 3
    r = run(fixture_models["float32"], images / "img0.png", "--json", "--threshold", "1")
    assert json.loads(r.stdout)["labels"] == []


def test_bad_inputs_batch_carries_on(fixture_models, images, tmp_path):
    good = images / "img0.png"
    jpeg = (images / "sub" / "deep.jpg").read_bytes()
    bad = {
        "truncated.jpg": jpeg[: len(jpeg) // 3],
        "empty.jpg": b"",
        "text.png": b"plain text\n",
    }
    for name, data in bad.items():
        (tmp_path / name).write_bytes(data)
    args = [
        tmp_path / "truncated.jpg",
        good,
        tmp_path / "empty.jpg",
        tmp_path / "missing.jpg",
        tmp_path / "text.png",
        images / "img1.png",
    ]
    r = run(fixture_models["int8"], "--json", *args)
    assert r.exit_code == 1
    assert [json.loads(x)["file"] for x in r.stdout.splitlines()] == [
        str(good),
        str(images / "img1.png"),
    ]
    errors = error_lines(r)
    assert len(errors) == 4, r.stderr
    for name, needle in [
        ("truncated.jpg", "cannot decode"),
        ("empty.jpg", "empty"),
        ("missing.jpg", "not found"),
        ("text.png", "not an image"),
    ]:
        assert any(name in e and needle in e for e in errors), (name, errors)
    assert "Traceback" not in r.output


def test_decompression_bomb_is_a_failed_input(fixture_models, images, tmp_path, monkeypatch):
    Image.fromarray(np.zeros((200, 200, 3), np.uint8)).save(tmp_path / "huge.png")
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 5000)  # in-process: CliRunner shares Pillow
    r = run(fixture_models["int8"], tmp_path / "huge.png", images / "img0.png")
    assert r.exit_code == 1
    assert any("huge.png" in e and "decompression-bomb" in e for e in error_lines(r))


def test_odd_modes_work_through_cli(fixture_models, images, tmp_path):
    from test_runtime_classifier import odd_mode_images

    frame = np.load(fixture_models["float32"].parent / "reference_frames.npy")[7]
    for name, img in odd_mode_images(frame).items():
        img.save(tmp_path / name)
    r = run(fixture_models["int8"], "--json", tmp_path)
    assert r.exit_code == 0, r.output
    assert len(r.stdout.splitlines()) == 5


@pytest.mark.parametrize("kind", ["corrupt", "text", "vector", "missing"])
def test_model_errors_exit_2(fixture_models, images, tmp_path, kind):
    path = {"vector": fixture_models["vector"], "missing": tmp_path / "nope.tflite"}.get(
        kind, tmp_path / "bad.tflite"
    )
    if kind == "corrupt":
        path.write_bytes(fixture_models["float32"].read_bytes()[:300])
    elif kind == "text":
        path.write_text("hello")
    for args in ([path, images / "img0.png"], ["info", path], ["bench", path, "--runs", "1"]):
        r = run(*args)
        assert r.exit_code == 2, (args, r.output)
        lines = r.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("Error: "), r.stderr
    if kind == "vector":
        assert "input is not an image: shape" in r.stderr


def test_usage_errors_exit_2(fixture_models):
    assert run(fixture_models["int8"]).exit_code == 2  # no inputs
    assert run(fixture_models["int8"], "x.png", "--json", "--csv").exit_code == 2
    assert run(fixture_models["int8"], "x.png", "--threads", "0").exit_code == 2
    assert run("bench", fixture_models["int8"], "--threads-sweep", "a,b").exit_code == 2


def test_help_has_examples():
    for args in ([], ["predict"], ["info"], ["eval"], ["bench"]):
        r = run(*args, "--help")
        assert r.exit_code == 0 and "Examples:" in r.stdout, args


def test_info(fixture_models):
    r = run("info", fixture_models["int8"], "--json")
    assert r.exit_code == 0, r.output
    d = json.loads(r.stdout)
    assert d["labels"] == ["red", "green", "blue"] and d["thresholds"] == [0.5, 0.4, 0.6]
    assert d["input"]["dtype"] == "uint8" and d["input"]["shape"][1:] == [32, 32, 3]
    assert d["quantization"] == "int8" and d["training"]["n_train"] == 256 and d["parity"]["passed"]
    assert d["ops"] is None or "CONV_2D" in d["ops"]
    r = run("info", fixture_models["plain"])
    assert r.exit_code == 0 and "label_0" in r.stdout and "metadata    none" in r.stdout


def _labels_csv(fixture_models, tmp_path, header: list[str]) -> Path:
    sys.path.insert(0, str(Path(__file__).parent))
    from make_fixture_models import synthetic_images

    x, y = synthetic_images(24, seed=5)
    (tmp_path / "img").mkdir(exist_ok=True)
    with open(tmp_path / "labels.csv", "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(header)
        for i, (img, row) in enumerate(zip(x, y)):
            Image.fromarray(img).save(tmp_path / "img" / f"{i}.png")
            w.writerow([f"img/{i}.png", *[int(v) for v in row]])
    return tmp_path / "labels.csv"


def test_eval(fixture_models, tmp_path):
    path = _labels_csv(fixture_models, tmp_path, ["filename", "red", "green", "blue"])
    r = run("eval", fixture_models["int8"], path, "--json")
    assert r.exit_code == 0, r.output
    rep = json.loads(r.stdout)
    assert rep["n_samples"] == 24 and set(rep["per_label"]) == {"red", "green", "blue"}
    assert rep["per_label"]["green"]["threshold"] == pytest.approx(0.4)
    assert rep["map"] > 0.6  # the fixture model did learn its synthetic task
    r = run("eval", fixture_models["int8"], path)
    assert r.exit_code == 0 and "micro-F1" in r.stdout


def test_eval_labels_mismatch(fixture_models, tmp_path):
    path = _labels_csv(fixture_models, tmp_path, ["filename", "red", "green", "purple"])
    r = run("eval", fixture_models["int8"], path)
    assert r.exit_code == 2
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: "), r.stderr


def test_bench_json(fixture_models, images):
    r = run(
        "bench",
        fixture_models["int8"],
        "--runs",
        "3",
        "--warmup",
        "1",
        "--threads-sweep",
        "1,2",
        "--json",
    )
    assert r.exit_code == 0, r.output
    rows = [json.loads(x) for x in r.stdout.splitlines()]
    assert [x["threads"] for x in rows] == [1, 2]
    assert {"min", "mean", "p50", "p90", "p99", "max"} <= set(rows[0]["latency"])
    r = run("bench", fixture_models["int8"], "--image", images / "sub" / "deep.jpg", "--runs", "2")
    assert r.exit_code == 0 and "stages" in r.stdout


def test_watch(fixture_models, images, tmp_path, monkeypatch):
    from test_runtime_watch import watch_started

    folder = tmp_path / "incoming"
    folder.mkdir()
    Image.open(images / "img0.png").save(folder / "already_there.png")
    data = (images / "img1.png").read_bytes()
    started = watch_started(monkeypatch)

    def producer():
        assert started.wait(30)  # not a fixed sleep: a loaded machine may take longer to start
        (folder / "notes.txt").write_text("ignored")
        with open(folder / "new.png", "wb") as fh:  # written in two parts: must wait for the end
            fh.write(data[:100])
            fh.flush()
            time.sleep(0.3)
            fh.write(data[100:])
        (folder / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 truncated")

    t = threading.Thread(target=producer)
    t.start()
    r = run(
        fixture_models["int8"],
        "--watch",
        folder,
        "--json",
        "--interval",
        "0.05",
        "--watch-timeout",
        "20",
        "--max-count",
        "2",
    )
    t.join()
    assert r.exit_code == 1, r.output  # broken.jpg failed
    files = [json.loads(x)["file"] for x in r.stdout.splitlines()]
    assert files == [str(folder / "new.png")]
    assert any("broken.jpg" in e for e in error_lines(r))


def _subprocess(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess:
    code = "import sys; from edge_runtime.cli import main; main(sys.argv[1:])"
    return subprocess.run(
        [sys.executable, "-c", code, *map(str, args)],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_real_process_exit_codes(fixture_models, images, tmp_path):
    r = _subprocess(
        fixture_models["int8"],
        "--json",
        "-",
        stdin=f"{images / 'img0.png'}\n{tmp_path / 'gone.png'}\n",
    )
    assert r.returncode == 1, r.stderr
    assert len(r.stdout.splitlines()) == 1
    assert (
        "Traceback" not in r.stderr
        and f"Error: {tmp_path / 'gone.png'}: file not found" in r.stderr
    )
    bad = tmp_path / "bad.tflite"
    bad.write_bytes(b"\0" * 64)
    r = _subprocess(bad, images / "img0.png")
    assert r.returncode == 2 and "Traceback" not in r.stderr and "Error:" in r.stderr


def test_no_tensorflow_imported(fixture_models):
    code = (
        "import sys, edge_runtime, edge_runtime.cli, edge_runtime.inference.bench\n"
        "from edge_runtime.cli import main\n"
        "try:\n"
        f"    main(['info', {str(fixture_models['int8'])!r}, '--json'])\n"
        "except SystemExit as e:\n"
        "    assert not e.code, e.code\n"
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in ('tensorflow', 'keras', 'tf_keras'))\n"
        "print('LOADED', bad)\n"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert "LOADED []" in r.stdout, r.stdout


@pytest.mark.skipif(not HAS_TF, reason="TensorFlow not installed")
def test_cli_with_tensorflow_backend(fixture_models, images):
    base = run(fixture_models["float32"], "--json", images)
    r = run(fixture_models["float32"], "--json", "--backend", "tensorflow", images)
    assert r.exit_code == 0, r.output
    for a, b in zip(base.stdout.splitlines(), r.stdout.splitlines()):
        a, b = json.loads(a), json.loads(b)
        assert a["labels"] == b["labels"]
        assert max(abs(a["scores"][k] - b["scores"][k]) for k in a["scores"]) < 1e-4
