"""Trainer: image cache, losses, models, end-to-end train(), CLI, and the train/serve skew check."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from train_helpers import tiny_config

from edge_common.images import load_images
from edge_runtime.evaluation.dataset import read_labels_csv
from edge_runtime.inference.preprocess import PREPROCESSING, load_image
from trainer import Arch, Augment, TrainConfig
from trainer.config import NO_AUGMENT
from trainer.errors import ConfigError, DataError
from trainer.model.losses import auto_pos_weights, resolve_pos_weights

EDGE_TRAIN = Path(sys.executable).with_name("edge-train")


# --- images -------------------------------------------------------------------------------------


def test_load_images_cache_hit_and_invalidation(demo_data, tmp_path):
    src = read_labels_csv(demo_data[0]).paths[:6]
    paths = []
    for p in src:  # private copies: this test modifies one
        shutil.copy(p, tmp_path / p.name)
        paths.append(tmp_path / p.name)
    cache = tmp_path / "cache"
    x1, f1 = load_images(paths, (40, 40), cache_dir=cache, workers=2)
    assert x1.shape == (6, 40, 40, 3) and x1.dtype == np.uint8 and f1 == []
    assert len(list(cache.glob("*.npy"))) == 1 and not list(cache.glob("*.tmp"))
    x2, _ = load_images(paths, (40, 40), cache_dir=cache)
    assert np.array_equal(x1, x2) and len(list(cache.glob("*.npy"))) == 1  # hit: no new entry
    load_images(paths, (32, 32), cache_dir=cache)  # other size: other key
    assert len(list(cache.glob("*.npy"))) == 2
    # Change one file: different content and mtime -> new key, new pixels.
    from PIL import Image

    Image.new("RGB", (64, 64), (255, 0, 0)).save(paths[0])
    os.utime(paths[0], ns=(time.time_ns(), time.time_ns() + 10**9))
    x3, _ = load_images(paths, (40, 40), cache_dir=cache)
    assert len(list(cache.glob("*.npy"))) == 3
    assert np.array_equal(x3[0], load_image(paths[0], (40, 40))) and not np.array_equal(
        x3[0], x1[0]
    )
    assert np.array_equal(x3[1:], x1[1:])


@pytest.mark.parametrize(
    "damage", ["empty_npy", "truncated_npy", "garbage_npy", "bad_meta", "list_meta"]
)
def test_corrupt_cache_is_a_miss_and_is_rewritten(demo_data, tmp_path, damage):
    paths = read_labels_csv(demo_data[0]).paths[:4]
    cache = tmp_path / "cache"
    x1, _ = load_images(paths, (24, 24), cache_dir=cache)
    (npy,), (meta,) = list(cache.glob("*.npy")), list(cache.glob("*.json"))
    good = npy.read_bytes()
    if damage == "empty_npy":
        npy.write_bytes(b"")
    elif damage == "truncated_npy":
        npy.write_bytes(good[: len(good) // 2])
    elif damage == "garbage_npy":
        npy.write_bytes(b"\x93NUMPY garbage")
    elif damage == "bad_meta":
        meta.write_text("{not json")
    else:
        meta.write_text("[1, 2]")
    x2, f2 = load_images(paths, (24, 24), cache_dir=cache)  # decodes again, no exception
    assert np.array_equal(x1, x2) and f2 == []
    assert npy.read_bytes() == good and json.loads(meta.read_text())["failures"] == []  # rewritten
    assert sorted(p.name for p in cache.iterdir()) == sorted(
        [npy.name, meta.name]
    )  # no temporary files


def test_cache_write_failure_leaves_no_temporary_file(demo_data, tmp_path, monkeypatch):
    paths = read_labels_csv(demo_data[0]).paths[:2]
    cache = tmp_path / "cache"

    def disk_full(*a, **k):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(np, "save", disk_full)
    x, _ = load_images(paths, (24, 24), cache_dir=cache)  # caching failed quietly
    assert x.shape == (2, 24, 24, 3) and list(cache.iterdir()) == []


def test_unreadable_image_row_is_skipped_with_reason(demo_data, tmp_path):
    from trainer.data.prepare import prepare_data

    table = read_labels_csv(demo_data[0])
    lines = ["filename,labels"]
    for p, row in zip(table.paths[:30], table.y[:30]):
        shutil.copy(p, tmp_path / p.name)
        lines.append(f"{p.name}," + " ".join(lab for lab, v in zip(table.labels, row) if v))
    (tmp_path / table.paths[4].name).write_bytes(b"not a png at all")
    csv = tmp_path / "labels.csv"
    csv.write_text("\n".join(lines) + "\n")
    data = prepare_data(tiny_config(csv, tmp_path / "run"))
    assert len(data.train.x) + len(data.val.x) == 29
    (s,) = data.skipped
    assert (
        s.row == 6 and s.filename.endswith(table.paths[4].name) and "unreadable image" in s.reason
    )


def test_csv_without_labels_is_a_data_error(demo_data, tmp_path):
    from trainer.data.prepare import prepare_data

    src = read_labels_csv(demo_data[0]).paths[0]
    shutil.copy(src, tmp_path / src.name)
    for name, text in (
        ("joined.csv", f"filename,labels\n{src.name},\n"),
        ("columns.csv", f"filename\n{src.name}\n"),
    ):
        (tmp_path / name).write_text(text)
        with pytest.raises(DataError, match="no labels"):
            prepare_data(tiny_config(tmp_path / name, tmp_path / "run"))


# --- config -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "kw",
    [
        {"translate": 0.5},
        {"translate": -0.1},
        {"translate": float("nan")},
        {"brightness": -0.1},
        {"brightness": 1.5},
        {"contrast": -0.2},
        {"contrast": 2.0},
    ],
)
def test_bad_augment_values_raise_config_error(kw):
    with pytest.raises(ConfigError, match=next(iter(kw))):
        Augment(**kw)
    with pytest.raises(ConfigError):
        TrainConfig(data="d.csv", out="o", augment=kw)  # a dict, as read from JSON


def test_config_to_dict_is_json_ready():
    c = TrainConfig(
        data="d.csv", out="o", arch="seed", loss="focal", pos_weight=[1, 2], augment=NO_AUGMENT
    )
    d = c.to_dict()
    assert d["arch"] == "seed" and d["loss"] == "focal" and d["pos_weight"] == [1.0, 2.0]
    assert d["augment"] == {
        "flip": False,
        "vflip": False,
        "translate": 0.0,
        "brightness": 0.0,
        "contrast": 0.0,
    }
    assert json.loads(json.dumps(d)) == d


# --- losses -------------------------------------------------------------------------------------

Y = np.array([[1, 0, 1], [0, 0, 1], [1, 1, 0]], np.float32)
P = np.array([[0.9, 0.2, 0.6], [0.3, 0.1, 0.8], [0.7, 0.4, 0.05]], np.float32)
W = np.array([2.0, 1.0, 3.0], np.float32)


def _manual(gamma: float) -> float:
    total = 0.0
    for i in range(3):
        row = 0.0
        for j in range(3):
            y, p, w = Y[i, j], float(P[i, j]), W[j]
            row += -(w * y * (1 - p) ** gamma * np.log(p) + (1 - y) * p**gamma * np.log(1 - p))
        total += row / 3
    return total / 3


def test_weighted_bce_matches_numpy():
    from trainer.model.losses import weighted_bce

    got = float(np.mean(np.asarray(weighted_bce(W)(Y, P))))
    assert got == pytest.approx(_manual(0.0), rel=1e-5)
    import keras

    plain = float(keras.losses.BinaryCrossentropy()(Y, P))
    assert float(np.mean(np.asarray(weighted_bce(np.ones(3))(Y, P)))) == pytest.approx(
        plain, rel=1e-4
    )


def test_focal_matches_numpy_and_downweights_easy():
    from trainer.model.losses import focal_loss, weighted_bce

    got = float(np.mean(np.asarray(focal_loss(W, gamma=2.0)(Y, P))))
    assert got == pytest.approx(_manual(2.0), rel=1e-5)
    assert got < float(np.mean(np.asarray(weighted_bce(W)(Y, P))))


def test_pos_weights():
    y = np.array([[1, 0, 0], [1, 0, 1], [1, 0, 0], [0, 0, 0]] * 10)
    assert auto_pos_weights(y).tolist() == [1.0, 1.0, 3.0]  # 1/3 -> clipped to 1; none -> 1
    y2 = np.zeros((100, 1))
    y2[0] = 1
    assert auto_pos_weights(y2).tolist() == [10.0]  # clipped at the ceiling
    assert resolve_pos_weights("none", y).tolist() == [1, 1, 1]
    assert resolve_pos_weights([1, 2, 3], y).tolist() == [1, 2, 3]
    with pytest.raises(ValueError):
        resolve_pos_weights([1, 2], y)


# --- models -------------------------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("arch", list(Arch))
def test_arch_builds_sigmoid_and_converts_to_builtin_int8(arch, demo_data):
    import keras

    from exporter.convert import convert, op_names
    from trainer.model.models import build_model

    size = 32 if arch is not Arch.MOBILENETV3 else 48
    model = build_model(arch, size, 5)
    assert isinstance(model.layers[1], keras.layers.Rescaling) or arch is Arch.MOBILENETV3
    last = model.layers[-1]
    assert last.name == "scores" and last.activation is keras.activations.sigmoid
    out = model.predict(np.full((2, size, size, 3), 255.0, np.float32), verbose=0)
    assert out.shape == (2, 5) and np.all((out > 0) & (out < 1))
    paths = read_labels_csv(demo_data[0]).paths[:8]
    data = convert(model, "int8", lambda: (load_image(p, (size, size)) for p in paths))
    assert data[4:8] == b"TFL3" and "SOFTMAX" not in op_names(data)


# --- augmentation -------------------------------------------------------------------------------


def _augmented(aug: Augment, n: int = 64, seed: int = 0):
    """n augmented copies of one image through `augment_fn`, mapped over (image, labels) as the
    training stream maps it, and the labels that came out."""
    import tensorflow as tf

    from trainer.data.augment import augment_fn

    rng = np.random.default_rng(seed)
    img = rng.integers(30, 226, (24, 24, 3)).astype(np.uint8)  # away from 0/255: no clipping
    y = np.tile(np.array([[1, 0, 1]], np.int8), (n, 1))
    fn = augment_fn(aug, 24, 24)
    ds = tf.data.Dataset.from_tensor_slices(
        (np.repeat(img[None], n, 0).astype(np.float32), y.astype(np.float32))
    )
    x_out, y_out = next(iter(ds.map(lambda im, lab: (fn(im), lab)).batch(n)))
    return img.astype(np.float32), x_out.numpy(), y_out.numpy(), y


def test_augment_flip_is_a_mirror_image_and_labels_stay():
    img, out, y_out, y = _augmented(
        Augment(flip=True, vflip=False, translate=0, brightness=0, contrast=0)
    )
    mirrored = np.array([np.array_equal(o, img[:, ::-1]) for o in out])
    same = np.array([np.array_equal(o, img) for o in out])
    assert np.all(mirrored | same) and 10 < mirrored.sum() < 54  # each either, both happen
    assert np.array_equal(y_out, y)
    _, out, _, _ = _augmented(
        Augment(flip=False, vflip=True, translate=0, brightness=0, contrast=0)
    )
    assert all(np.array_equal(o, img) or np.array_equal(o, img[::-1]) for o in out)


def test_augment_translate_is_a_shift_within_the_limit():
    img, out, y_out, y = _augmented(Augment(flip=False, translate=0.125, brightness=0, contrast=0))
    pad = 3  # 0.125 * 24
    padded = np.pad(img, ((pad, pad), (pad, pad), (0, 0)), mode="reflect")
    shifts = set()
    for o in out:
        found = [
            (dy, dx)
            for dy in range(2 * pad + 1)
            for dx in range(2 * pad + 1)
            if np.array_equal(o, padded[dy : dy + 24, dx : dx + 24])
        ]
        assert found, "not a window of the reflect-padded image"
        shifts.add(found[0])
    assert len(shifts) > 5 and np.array_equal(y_out, y)


def test_augment_brightness_and_contrast_stay_in_their_ranges():
    img, out, y_out, y = _augmented(Augment(flip=False, translate=0, brightness=0.1, contrast=0))
    deltas = out - img
    assert np.allclose(
        deltas, deltas.reshape(len(out), -1)[:, :1, None, None].reshape(-1, 1, 1, 1), atol=1e-3
    )
    d = deltas[:, 0, 0, 0]
    assert np.all(np.abs(d) <= 0.1 * 255 + 1e-3) and d.std() > 5  # a real spread, not a constant
    img, out, _, _ = _augmented(Augment(flip=False, translate=0, brightness=0, contrast=0.2))
    centred = img - img.mean(axis=(0, 1))
    factors = [
        np.linalg.lstsq(centred.reshape(-1, 1), (o - o.mean(axis=(0, 1))).reshape(-1), rcond=None)[
            0
        ][0]
        for o in out
    ]
    assert all(0.8 - 1e-3 <= f <= 1.2 + 1e-3 for f in factors) and np.std(factors) > 0.03
    assert np.array_equal(y_out, y)


# --- end to end ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def run(demo_data, tmp_path_factory):
    from trainer import train

    out = tmp_path_factory.mktemp("runs") / "r1"
    return train(tiny_config(demo_data[0], out, cache_dir=str(out.parent / "cache")))


@pytest.mark.slow
@pytest.mark.xdist_group("trainer-run")  # one worker trains the module's `run` once
def test_train_writes_all_artifacts(run, demo_data):
    d = run.run_dir
    assert sorted(p.name for p in d.iterdir()) == sorted(
        [
            "model.keras",
            "manifest.json",
            "metrics.json",
            "train_split.csv",
            "val_split.csv",
            "curves.png",
            "pr_curves.png",
        ]
    )
    assert not list(d.parent.glob(".r1.tmp-*"))
    m = json.loads((d / "manifest.json").read_text())
    assert m == run.manifest.to_json()
    assert m["schema_version"] == 1 and m["labels"] == [
        "circle",
        "cross",
        "square",
        "star",
        "triangle",
    ]
    assert len(m["thresholds"]) == 5 and m["input_size"] == [32, 32] and m["arch"] == "compact"
    assert m["preprocessing"] == PREPROCESSING
    assert m["data"]["train_csv"] == "train_split.csv" and m["data"]["val_csv"] == "val_split.csv"
    assert (
        m["data"]["source_csv"] == Path(demo_data[0]).name
    )  # a name: no path of this machine ships
    assert m["training"]["config"]["data"] == Path(demo_data[0]).name and m["lineage"] == {
        "start": "scratch"
    }
    assert m["thresholds_source"] == "calibrated" and {"learned", "per_label", "advice"} <= set(
        m["quality"]
    )
    assert set(m["metrics"]) == {"at_0.5", "calibrated"}
    assert m["training"]["epochs_run"] == 2 and 1 <= m["training"]["best_epoch"] <= 2
    assert set(m["training"]["history"]) >= {
        "loss",
        "val_loss",
        "val_map",
        "learning_rate",
        "stage",
    }
    assert set(m["versions"]) == {"python", "tensorflow", "keras", "numpy", "pillow", "toolkit"}
    tr = read_labels_csv(d / m["data"]["train_csv"])
    va = read_labels_csv(d / m["data"]["val_csv"])
    assert tr.labels == va.labels == m["labels"]
    assert len(tr) + len(va) == 160 and not set(tr.paths) & set(va.paths)
    assert va.y.sum(axis=0).min() >= 1  # every label has validation positives
    assert "macro-F1" in run.summary()


@pytest.mark.slow
@pytest.mark.xdist_group("trainer-run")  # one worker trains the module's `run` once
def test_saved_model_loads_with_safe_mode_in_a_clean_process(run):
    code = (
        "import sys, numpy as np, keras\n"
        f"m = keras.models.load_model({str(run.run_dir / 'model.keras')!r}, safe_mode=True)\n"
        "assert not any(k.startswith('trainer') for k in sys.modules)\n"
        "print(m.predict(np.zeros((1, 32, 32, 3), 'float32'), verbose=0).shape)\n"
    )
    r = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"},
    )
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "(1, 5)"


@pytest.mark.slow
def test_training_pipeline_feeds_exactly_load_image(demo_data, tmp_path):
    """Skew test: the pixels the model is fed equal the runtime's `load_image` output."""
    from trainer.data.prepare import prepare_data
    from trainer.data.streaming import make_stream

    data = prepare_data(
        tiny_config(demo_data[0], tmp_path / "run", input_size=40, cache_dir=str(tmp_path))
    )
    for _ in range(2):  # second pass: from the cache
        ds = make_stream(data.train.x, data.train.y, 16, NO_AUGMENT, shuffle=False)
        images, labels = next(iter(ds))
        for i in range(16):
            expect = load_image(data.train.table.paths[i], (40, 40))
            assert np.array_equal(images[i].numpy(), expect.astype(np.float32))
            assert np.array_equal(labels[i].numpy(), data.train.y[i])
        data = prepare_data(
            tiny_config(demo_data[0], tmp_path / "run", input_size=40, cache_dir=str(tmp_path))
        )


@pytest.mark.slow
@pytest.mark.xdist_group("trainer-run")  # one worker trains the module's `run` once
def test_crash_leaves_no_run_dir_and_existing_run_is_kept(demo_data, tmp_path, monkeypatch, run):
    from trainer import artifacts, train
    from trainer.errors import ConfigError

    def boom(*a, **k):
        raise RuntimeError("disk full")

    monkeypatch.setattr(artifacts, "plot_pr_curves", boom)
    out = tmp_path / "crash"
    with pytest.raises(RuntimeError, match="disk full"):
        train(tiny_config(demo_data[0], out, epochs=1, cache_dir=str(run.run_dir.parent / "cache")))
    assert not out.exists() and not list(tmp_path.glob(".crash*"))
    with pytest.raises(ConfigError, match="not empty"):
        train(tiny_config(demo_data[0], run.run_dir))


# --- CLI ----------------------------------------------------------------------------------------


@pytest.mark.slow
def test_cli_json_with_val_csv(demo_data, tmp_path):
    from click.testing import CliRunner

    from trainer.cli import cli

    out = tmp_path / "run"
    r = CliRunner().invoke(
        cli,
        [
            str(demo_data[0]),
            "--out",
            str(out),
            "--val-data",
            str(demo_data[1]),
            "--input-size",
            "32",
            "--epochs",
            "1",
            "--arch",
            "seed",
            "--no-augment",
            "--json",
            "--quiet",
        ],
    )
    assert r.exit_code == 0, r.output
    res = json.loads(r.stdout)
    assert res["run_dir"] == str(out.resolve()) and len(res["thresholds"]) == 5
    m = json.loads((out / "manifest.json").read_text())
    assert m["arch"] == "seed" and m["data"]["source_val_csv"] == Path(demo_data[1]).name
    assert m["data"]["n_val"] == 48
    assert res["quality"] == m["quality"] and res["quality"]["verdict"] in (
        "learned",
        "weak",
        "not_learned",
    )


@pytest.mark.slow
def test_cli_focal_loss_is_the_loss_trained_and_validated_with(demo_data, tmp_path):
    """A real (tiny) training with `--loss focal --focal-gamma 1.5`: the validation loss the run
    recorded is the focal loss of the saved model's scores, not the BCE of them."""
    import keras
    from click.testing import CliRunner

    from edge_common.images import load_table
    from edge_common.run import open_run
    from trainer.cli import cli
    from trainer.model.losses import focal_loss, weighted_bce

    out = tmp_path / "run"
    args = ["--out", str(out), "--input-size", "32", "--epochs", "2", "--no-early-stop"]
    r = CliRunner().invoke(
        cli, [str(demo_data[0]), *args, "--loss", "focal", "--focal-gamma", "1.5", "--quiet"]
    )
    assert r.exit_code == 0, r.output
    run = open_run(out)
    config = run.manifest.training.config
    assert (config["loss"], config["focal_gamma"], config["pos_weight"]) == ("focal", 1.5, "auto")
    val_loss = run.manifest.training.history["val_loss"]
    assert len(val_loss) == 2 and all(np.isfinite(val_loss))
    # No early stopping: the saved weights are the last epoch's, which that val_loss scored.
    table, x = load_table(read_labels_csv(run.val_split), run.manifest.input_size, "validation")
    model = keras.models.load_model(run.model_path, safe_mode=True, compile=False)
    scores = model.predict(x.astype(np.float32), verbose=0)
    y = table.y.astype(np.float32)
    weights = resolve_pos_weights("auto", read_labels_csv(run.train_split).y)
    focal = float(np.mean(keras.ops.convert_to_numpy(focal_loss(weights, 1.5)(y, scores))))
    bce = float(np.mean(keras.ops.convert_to_numpy(weighted_bce(weights)(y, scores))))
    assert val_loss[-1] == pytest.approx(focal, abs=1e-4) and abs(focal - bce) > 0.01


@pytest.mark.parametrize(
    "content, needle",
    [
        ("image,labels\na.png,cat\n", "no 'filename' column"),
        ("filename,labels\nmissing.png,cat\n", "row 2 (missing.png)"),
    ],
)
def test_cli_bad_csv_is_one_line_exit_2(tmp_path, content, needle):
    from click.testing import CliRunner

    from trainer.cli import cli

    csv = tmp_path / "bad.csv"
    csv.write_text(content)
    r = CliRunner().invoke(cli, [str(csv), "--out", str(tmp_path / "run")])
    assert r.exit_code == 2
    assert r.stderr.startswith("Error: ") and needle in r.stderr
    assert r.stderr.count("\n") == 1 and "Traceback" not in r.stderr
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize(
    "args, needle",
    [
        (["--pos-weight", "abc"], "--pos-weight"),
        (["--pos-weight", "1,,2"], "--pos-weight"),
        (["--translate", "0.7"], "translate must be in [0, 0.5)"),
        (["--brightness", "-1"], "brightness must be in [0, 1]"),
        (["--input-size", "8"], "input_size must be >= 32"),
        (["--input-size", "5000"], "input_size must be <= 4096"),  # what a run's readers refuse
        (
            ["--arch", "compact", "--weights", "imagenet"],
            "weights is only used with arch mobilenetv2",
        ),
        (["--head-features", "some"], "'some' is not one of"),
        (["--head-epochs", "40"], "head_epochs must be in [1, epochs=30]"),
    ],
)
def test_cli_bad_option_value_is_usage_error(tmp_path, args, needle):
    from click.testing import CliRunner

    from trainer.cli import cli

    r = CliRunner().invoke(cli, [str(tmp_path / "data.csv"), "--out", str(tmp_path / "run"), *args])
    assert r.exit_code == 2, r.output
    assert "Traceback" not in r.stderr and "training failed" not in r.stderr
    errors = [line for line in r.stderr.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1 and needle in errors[0]
    assert (
        r.stderr.rstrip("\n").splitlines()[-1] == errors[0]
    )  # the message is the last, single line
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize(
    "args",
    [["--size", "0"], ["--size", "8"], ["--n-train", "0"], ["--n-test", "-1"], ["--seed", "-1"]],
)
def test_cli_make_demo_bad_values_are_usage_errors(tmp_path, args):
    from click.testing import CliRunner

    from trainer.cli import cli

    r = CliRunner().invoke(cli, ["make-demo", str(tmp_path / "d"), *args])
    assert r.exit_code == 2, r.output
    assert r.exception is None or isinstance(r.exception, SystemExit)
    assert "Traceback" not in r.stderr and "Error:" in r.stderr and args[0] in r.stderr
    assert not (tmp_path / "d").exists()


def test_cli_make_demo_value_error_is_one_line(tmp_path, monkeypatch):
    from click.testing import CliRunner

    from trainer.cli import cli
    from trainer.demo import demo_data

    def bad(config):
        raise ValueError("unknown shape 'blob'")

    monkeypatch.setattr(demo_data, "make_demo_dataset", bad)
    r = CliRunner().invoke(cli, ["make-demo", str(tmp_path / "d")])
    assert r.exit_code == 2 and r.stderr == "Error: unknown shape 'blob'\n"


def test_demo_config_rejects_unusable_values():
    from trainer.demo.demo_data import DemoConfig

    with pytest.raises(ValueError, match="size"):
        DemoConfig("d", image_size=0)
    with pytest.raises(ValueError, match="counts"):
        DemoConfig("d", n_train=-1)


def test_cli_subprocess_bad_input_and_help(tmp_path):
    r = subprocess.run(
        [str(EDGE_TRAIN), str(tmp_path / "none.csv"), "--out", str(tmp_path / "o")],
        capture_output=True,
        text=True,
    )
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert (
        r.stderr.strip().splitlines()[-1] == f"Error: {tmp_path / 'none.csv'}: labels CSV not found"
    )
    h = subprocess.run([str(EDGE_TRAIN), "train", "--help"], capture_output=True, text=True)
    assert h.returncode == 0 and "Examples:" in h.stdout and "--val-data" in h.stdout


@pytest.mark.slow
def test_cli_subprocess_make_demo_and_train(tmp_path):
    r = subprocess.run(
        [
            str(EDGE_TRAIN),
            "make-demo",
            str(tmp_path / "d"),
            "--n-train",
            "40",
            "--n-test",
            "8",
            "--size",
            "32",
        ],
        capture_output=True,
        text=True,
    )
    assert r.returncode == 0, r.stderr
    r = subprocess.run(
        [
            str(EDGE_TRAIN),
            str(tmp_path / "d" / "train.csv"),
            "--out",
            str(tmp_path / "run"),
            "--arch",
            "compact",
            "--input-size",
            "32",
            "--epochs",
            "2",
            "--json",
        ],
        capture_output=True,
        text=True,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"},
    )
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["epochs_run"] == 2  # stdout is exactly one JSON object
    assert "epoch 1/2" in r.stderr and "val_mAP" in r.stderr
    assert (tmp_path / "run" / "model.keras").is_file()


def test_epoch_log_draws_a_batch_bar_only_on_a_terminal():
    import io

    from trainer.fit.callbacks import CLEAR_LINE, EpochLog

    class Terminal(io.StringIO):
        def isatty(self):
            return True

    class FakeOptimizer:  # only the learning rate is read
        learning_rate = 0.001

    class Model:
        optimizer = FakeOptimizer()

    for stream, live in ((Terminal(), True), (io.StringIO(), False)):
        cb = EpochLog(2, steps=3, stream=stream)
        cb.set_model(Model())
        cb.on_epoch_begin(0)
        for b in range(3):
            cb.on_train_batch_end(b, {"loss": 0.5})
        logs = {"loss": 0.4, "val_map": 0.9}
        cb.on_epoch_end(0, logs)
        assert logs == {
            "loss": 0.4,
            "val_map": 0.9,
        }  # prints only: history is the same with --quiet
        out = stream.getvalue()
        assert ("3/3" in out and CLEAR_LINE in out) is live
        assert (
            out.rstrip().endswith("s")
            and "epoch 1/2  loss 0.4000" in out
            and "val_mAP 0.9000" in out
        )
        assert "lr 1.0e-03" in out  # the optimizer's rate when the logs hold none
        cb.on_epoch_end(1, {"loss": 0.3, "val_map": 0.9, "learning_rate": 0.003})
        assert "lr 3.0e-03" in stream.getvalue()  # the epoch's rate, as logged by ReduceLROnPlateau
