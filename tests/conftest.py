"""Shared fixtures: small seeded demo data, made once per test session."""
from __future__ import annotations

import pytest

from trainer.demo_data import DemoConfig, make_demo_dataset


@pytest.fixture(scope="session")
def demo_data(tmp_path_factory):
    """A small demo set: (train_csv, test_csv) with 160 / 48 images of 64x64 pixels."""
    out = tmp_path_factory.mktemp("demo")
    return make_demo_dataset(DemoConfig(str(out), n_train=160, n_test=48, image_size=64, seed=0))


@pytest.fixture(scope="session")
def trained_run(tmp_path_factory):
    """A tiny `compact` model trained for seconds on its own demo data: the run directory.

    640 images, so the exporter tests judge parity on 128 held-out ones: with fewer, one or two
    near-threshold flips of this weak model decide a default gate by chance."""
    pytest.importorskip("tensorflow")
    from trainer import TrainConfig, train

    root = tmp_path_factory.mktemp("run")
    train_csv, _ = make_demo_dataset(DemoConfig(str(root / "data"), n_train=640, n_test=8, image_size=32, seed=1))
    result = train(TrainConfig(data=str(train_csv), out=str(root / "run"), arch="compact", input_size=32,
                               epochs=12, patience=12, batch_size=32, seed=0, verbose=False))
    return result.run_dir


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
