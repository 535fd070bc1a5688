"""Shared fixtures: small seeded demo data, made once per test session."""
from __future__ import annotations

import pytest

from trainer.demo_data import DemoConfig, make_demo_dataset


@pytest.fixture(scope="session")
def demo_data(tmp_path_factory):
    """A small demo set: (train_csv, test_csv) with 160 / 48 images of 64x64 pixels."""
    out = tmp_path_factory.mktemp("demo")
    return make_demo_dataset(DemoConfig(str(out), n_train=160, n_test=48, image_size=64, seed=0))


def write_colour_squares(folder, n: int, seed: int):
    """An easy labelled set on disk: bright squares in the red, green or blue channel (any subset).

    A small model learns it well in seconds, so its scores sit far from the thresholds and the
    exporter's default gates can judge the conversion rather than the model's doubts."""
    import csv

    from PIL import Image

    from make_fixture_models import LABELS, synthetic_images

    folder.mkdir(parents=True, exist_ok=True)
    x, y = synthetic_images(n, seed=seed)
    with open(folder / "labels.csv", "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["filename", *LABELS])
        for i, (img, row) in enumerate(zip(x, y)):
            Image.fromarray(img).save(folder / f"{i:04d}.png")
            w.writerow([f"{i:04d}.png", *(int(v) for v in row)])
    return folder / "labels.csv"


@pytest.fixture(scope="session")
def trained_run(tmp_path_factory):
    """A tiny `compact` model trained for seconds on the colour-squares task: the run directory.

    640 images, so the exporter judges parity on 128 held-out ones at its default tolerances."""
    pytest.importorskip("tensorflow")
    from trainer import TrainConfig, train

    root = tmp_path_factory.mktemp("run")
    labels_csv = write_colour_squares(root / "data", 640, seed=1)
    result = train(TrainConfig(data=str(labels_csv), out=str(root / "run"), arch="compact", input_size=32,
                               epochs=10, patience=10, batch_size=32, seed=0, verbose=False))
    return result.run_dir


@pytest.fixture(scope="session")
def exported(trained_run, tmp_path_factory):
    """{mode: ExportResult} of `trained_run` exported once per mode at the default gates."""
    from exporter import ExportConfig, export

    out = tmp_path_factory.mktemp("exported")
    return {mode: export(ExportConfig(run_dir=str(trained_run), out=str(out / f"{mode}.tflite"), quant=mode,
                                      calibration_size=64), log=lambda m: None)
            for mode in ("float32", "float16", "dynamic", "int8")}


@pytest.fixture(scope="session")
def fixture_models(tmp_path_factory):
    """{name: Path} of the tiny TFLite fixture models (see tests/make_fixture_models.py).

    Uses the folder in `$EDGE_FIXTURE_MODELS` when set (built once by the full environment, so
    the runtime tests run without TensorFlow); otherwise builds them here, which needs TensorFlow.
    """
    import json
    import os
    from pathlib import Path

    folder = os.environ.get("EDGE_FIXTURE_MODELS")
    if folder:
        index = Path(folder) / "fixtures.json"
        if not index.is_file():
            pytest.fail(f"$EDGE_FIXTURE_MODELS={folder} holds no fixtures.json: run tests/make_fixture_models.py")
        return {name: Path(folder) / file for name, file in json.loads(index.read_text()).items()}
    pytest.importorskip("tensorflow", reason="building fixture models needs TensorFlow; set $EDGE_FIXTURE_MODELS")
    from make_fixture_models import build_fixture_models

    return build_fixture_models(tmp_path_factory.mktemp("fixture_models"))
