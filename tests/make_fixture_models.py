"""Build the tiny TFLite models the runtime tests run on (needs TensorFlow).

CI builds them once in the full environment and points `$EDGE_FIXTURE_MODELS` at the folder, so
the runtime tests can run in lean environments that have only an interpreter package:

    python tests/make_fixture_models.py OUT_DIR

Files written to OUT_DIR:
- `float32.tflite`, `float16.tflite`, `dynamic.tflite`, `int8.tflite`: a 3-label classifier
  (32x32 RGB input) with metadata embedded the way the exporter does it (standard TFLite Model
  Metadata in the flatbuffer, `labels.txt` and our JSON in the appended archive);
- `int8_calibrated.tflite`, `float32_calibrated.tflite`: the same graphs with the standard score
  calibration (`edge-export --score-calibration`) and thresholds placed ON scores the reference
  frames reach (exact ties), one float32 step above one, and between two float32 values
  (`tie_thresholds`): what MediaPipe at threshold 0.5 must decide exactly as edge-infer;
- `plain.tflite`: the float32 model without metadata (a model from elsewhere);
- `vector.tflite`: a model whose input is a (1, 10) vector, not an image;
- `reference_frames.npy` / `keras_scores.npy`: a few uint8 frames and the Keras scores on them.

With `--trained-run`, also what the exporter tests share (the `trained_run` and `exported`
fixtures of tests/conftest.py), so that every pytest worker reuses one build:
- `trained/run/`: a real `edge-train` run (compact, 32 px) on an easy colour-squares task it learns
  well, and `trained/{mode}.tflite` its real exports at the default gates, with
  `trained/exported.pickle` holding their `ExportResult`s, and `trained/int8_calibrated.tflite`
  the int8 export with the standard score calibration written in (`calibrated_copy`).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

LABELS = ["red", "green", "blue"]
THRESHOLDS = [0.5, 0.4, 0.6]
SIZE = 32
MODES = ("float32", "float16", "dynamic", "int8")


def synthetic_images(
    n: int, seed: int, intensity: tuple[int, int] = (180, 256)
) -> tuple[np.ndarray, np.ndarray]:
    """uint8 images whose labels say which colour channel has a bright square in it (its value
    drawn from `intensity`, low inclusive, high exclusive) on dark noise (0-59)."""
    rng = np.random.default_rng(seed)
    x = rng.integers(0, 60, size=(n, SIZE, SIZE, 3), dtype=np.uint8)
    y = (rng.random((n, 3)) < 0.5).astype(np.float32)
    for i in range(n):
        for c in range(3):
            if y[i, c]:
                r, s = rng.integers(0, SIZE - 12, size=2)
                x[i, r : r + 12, s : s + 12, c] = rng.integers(*intensity)
    return x, y


def build_fixture_models(out_dir: str | Path) -> dict[str, Path]:
    """Write the fixture models into `out_dir`; return {name: path} (modes, "plain", "vector")."""
    import tensorflow as tf

    from edge_runtime import Classifier
    from edge_runtime.inference.preprocess import PREPROCESSING
    from exporter.convert import convert
    from exporter.model_metadata import ModelInfo, write_model

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    tf.keras.utils.set_random_seed(0)
    x, y = synthetic_images(256, seed=0)

    inp = tf.keras.Input((SIZE, SIZE, 3), name="image")
    h = tf.keras.layers.Rescaling(1.0 / 255)(inp)
    h = tf.keras.layers.Conv2D(8, 3, strides=2, activation="relu")(h)
    h = tf.keras.layers.Conv2D(16, 3, strides=2, activation="relu")(h)
    h = tf.keras.layers.GlobalAveragePooling2D()(h)
    outp = tf.keras.layers.Dense(len(LABELS), activation="sigmoid", name="scores")(h)
    model = tf.keras.Model(inp, outp)
    model.compile(optimizer=tf.keras.optimizers.Adam(0.01), loss="binary_crossentropy")
    model.fit(x.astype(np.float32), y, epochs=8, batch_size=32, verbose=0)

    frames, _ = synthetic_images(8, seed=1)
    np.save(out / "reference_frames.npy", frames)
    np.save(out / "keras_scores.npy", model.predict(frames.astype(np.float32), verbose=0))

    def representative():
        yield from x[:64]

    paths: dict[str, Path] = {}
    for mode in MODES:
        data = convert(model, mode, representative=representative if mode == "int8" else None)
        meta = {
            "labels": LABELS,
            "thresholds": THRESHOLDS,
            "input": {
                "width": SIZE,
                "height": SIZE,
                "dtype": "uint8" if mode == "int8" else "float32",
            },
            "preprocessing": dict(PREPROCESSING),
            "arch": "fixture-cnn",
            "quantization": mode,
            "training": {"epochs": 8, "n_train": int(len(x)), "seed": 0},
            "parity": {"reference": "keras", "max_abs_diff": None, "passed": True},
            "toolkit_version": "0.1.0",
        }
        paths[mode] = out / f"{mode}.tflite"
        info = ModelInfo(
            name=f"fixture-{mode}",
            description="Fixture: which colour has a bright square",
            version="1",
            author="edge-multilabel tests",
            license="Apache-2.0",
        )
        paths[mode].write_bytes(write_model(data, meta, info))
        if mode == "float32":
            paths["plain"] = out / "plain.tflite"
            paths["plain"].write_bytes(data)
        if mode in ("float32", "int8"):
            name = f"{mode}_calibrated"
            scores = Classifier.from_file(paths[mode]).scores(frames)
            tied = {**meta, "thresholds": tie_thresholds(scores)}
            paths[name] = out / f"{name}.tflite"
            paths[name].write_bytes(write_model(data, tied, info, score_calibration=True))

    vin = tf.keras.Input((10,), name="vector")
    vec = tf.keras.Model(vin, tf.keras.layers.Dense(3, activation="sigmoid")(vin))
    conv = tf.lite.TFLiteConverter.from_keras_model(vec)
    paths["vector"] = out / "vector.tflite"
    paths["vector"].write_bytes(conv.convert())

    (out / "fixtures.json").write_text(json.dumps({k: v.name for k, v in paths.items()}, indent=1))
    return paths


def tie_thresholds(scores: np.ndarray) -> list[float]:
    """Per label, from a model's own scores on the reference frames (rows): label 0's threshold
    IS a score some frame reaches (a tie: that frame's label is present), label 1's is one float32
    step above such a score (that frame just misses), label 2's lies between that score and the
    next float32 (not representable: a float32 comparison must round it up)."""
    out = []
    for j in range(scores.shape[1]):
        col = np.unique(np.asarray(scores[:, j], dtype=np.float32))
        reached = col[len(col) // 2]
        if j % 3 == 0:
            t = float(reached)
        elif j % 3 == 1:
            t = float(np.nextafter(reached, np.float32(2), dtype=np.float32))
        else:
            t = float(reached) + float(np.spacing(reached)) / 4
        out.append(min(max(t, 0.0), 1.0))
    return out


def calibrated_copy(src: Path, dst: Path) -> Path:
    """`src` (an exported model) written again with the standard score calibration of its own
    thresholds, as `edge-export --score-calibration` writes it (no conversion: the same graph)."""
    from edge_runtime.modelfile import metadata, standard_metadata
    from exporter.model_metadata import ModelInfo, write_model

    data = src.read_bytes()
    meta = metadata.read(data)
    std = standard_metadata.read(data) or {}
    fields = {k: std.get(k) or "" for k in ("name", "description", "version", "author", "license")}
    dst.write_bytes(
        write_model(metadata.strip(data), meta, ModelInfo(**fields), score_calibration=True)
    )
    return dst


def write_colour_squares(
    folder: Path, n: int, seed: int, intensity: tuple[int, int] = (180, 256)
) -> Path:
    """An easy labelled set on disk: bright squares in the red, green or blue channel (any subset).

    A small model learns it well in seconds, so its scores sit far from the thresholds and the
    exporter's default gates can judge the conversion rather than the model's doubts. A lower
    `intensity` makes the harder pictures of tests/test_collect_loop.py."""
    import csv

    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    x, y = synthetic_images(n, seed=seed, intensity=intensity)
    with open(folder / "labels.csv", "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["filename", *LABELS])
        for i, (img, row) in enumerate(zip(x, y)):
            Image.fromarray(img).save(folder / f"{i:04d}.png")
            w.writerow([f"{i:04d}.png", *(int(v) for v in row)])
    return folder / "labels.csv"


def build_trained_run(root: Path) -> Path:
    """A tiny `compact` model trained for seconds on the colour-squares task: the run directory.

    640 images, so the exporter judges parity on 128 held-out ones at its default tolerances."""
    from trainer import TrainConfig, train

    labels_csv = write_colour_squares(root / "data", 640, seed=1)
    result = train(
        TrainConfig(
            data=str(labels_csv),
            out=str(root / "run"),
            arch="compact",
            input_size=32,
            epochs=10,
            patience=10,
            batch_size=32,
            seed=0,
            verbose=False,
        )
    )
    return result.run_dir


def export_every_mode(run_dir: Path, out: Path) -> dict:
    """{mode: ExportResult} of `run_dir` exported once per mode at the default gates."""
    from exporter import ExportConfig, export

    return {
        mode: export(
            ExportConfig(
                run_dir=str(run_dir),
                out=str(out / f"{mode}.tflite"),
                quant=mode,
                calibration_size=64,
            ),
            log=lambda m: None,
        )
        for mode in MODES
    }


def build_trained(out_dir: str | Path) -> tuple[Path, dict]:
    """`trained/` in `out_dir` (see the module docstring): (run_dir, {mode: ExportResult})."""
    import pickle

    root = Path(out_dir) / "trained"
    run_dir = build_trained_run(root)
    exported = export_every_mode(run_dir, root)
    (root / "exported.pickle").write_bytes(pickle.dumps(exported))
    calibrated_copy(root / "int8.tflite", root / "int8_calibrated.tflite")
    return run_dir, exported


if __name__ == "__main__":
    args = [a for a in sys.argv[1:] if a != "--trained-run"]
    if len(args) != 1:
        sys.exit("usage: python tests/make_fixture_models.py OUT_DIR [--trained-run]")
    if "--trained-run" in sys.argv:
        run_dir, exported = build_trained(args[0])
        print(f"trained  {run_dir}; exported {', '.join(exported)}")
    else:
        for name, path in build_fixture_models(args[0]).items():
            print(f"{name:8s} {path}")
