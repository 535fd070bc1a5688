"""The exporter's images (exporter/data.py): int8 calibration sampled label by label, never from
the held-out images the parity gate judges on. No TensorFlow: the run is written by hand over the
demo images, and the model is not needed to pick images."""

from __future__ import annotations

import numpy as np
import pytest
from test_run_dir import MANIFEST

from edge_common.run import TRAIN_SPLIT, VAL_SPLIT, RunDir, RunManifest
from edge_runtime.errors import DataError
from edge_runtime.evaluation.dataset import read_labels_csv, write_labels_csv
from exporter import ExportConfig
from exporter.data import held_out_images, pick_calibration, representative_images
from exporter.export import Run


def _labels() -> np.ndarray:
    n = 1000
    rng = np.random.default_rng(0)
    y = np.zeros((n, 4), np.int8)
    y[:, 0] = rng.random(n) < 0.6  # common
    y[:, 1] = rng.random(n) < 0.03  # rare
    y[17, 2] = 1  # a single positive in the whole set
    return y  # label 3 has no positive at all


def test_calibration_sample_gives_every_label_with_a_positive_its_share():
    y = _labels()
    idx = pick_calibration(y, 40, seed=0)
    assert len(idx) == 40 == len(set(idx)) and idx == sorted(idx) and 0 <= idx[0] <= idx[-1] < 1000
    # An equal share per label (40 // (2 * 4) = 5), not the label's prevalence: a random draw of
    # 40 rows would hold ~1 positive of the 3% label and the single positive of label 2 with p=0.04.
    assert y[idx, 1].sum() >= 5 and 17 in idx
    assert y[idx, 0].sum() < 40  # the rest is drawn from all rows, not only positives
    assert pick_calibration(y, 40, seed=0) == idx and pick_calibration(y, 40, seed=1) != idx


def test_calibration_sample_edge_cases():
    y = _labels()[:10]
    assert pick_calibration(y, 300, seed=0) == list(range(10))  # fewer rows than the budget: all
    assert len(pick_calibration(np.zeros((50, 3), np.int8), 8, seed=0)) == 8  # no positive at all
    assert len(pick_calibration(np.ones((50, 3), np.int8), 8, seed=0)) == 8  # every row positive
    assert len(pick_calibration(y, 1, seed=0)) == 1


@pytest.fixture
def split_run(demo_data, tmp_path):
    """A run over the demo images whose splits overlap: training rows 0-99, held-out rows 80-119."""

    def make(train_rows: slice, val_rows: slice) -> Run:
        table = read_labels_csv(demo_data[0])
        labels = list(table.labels)
        for name, rows in ((TRAIN_SPLIT, train_rows), (VAL_SPLIT, val_rows)):
            write_labels_csv(tmp_path / name, table.paths[rows], table.y[rows], labels)
        manifest = RunManifest.from_json(
            dict(
                MANIFEST,
                labels=labels,
                thresholds=[0.5] * len(labels),
                calibrated_thresholds=[0.5] * len(labels),
                input_size=[32, 32],
            )
        )
        return Run(RunDir(tmp_path, manifest), model=None)

    return make


def test_calibration_never_uses_a_held_out_image(split_run, demo_data, tmp_path):
    run = split_run(slice(0, 100), slice(80, 120))
    paths = read_labels_csv(demo_data[0]).paths
    config = ExportConfig(run_dir=str(tmp_path), calibration_size=300)
    log: list[str] = []
    x, y, held = held_out_images(config, run, log.append)
    assert held == frozenset(paths[80:120]) and x.shape == (40, 32, 32, 3) and len(y) == 40
    images, table = representative_images(config, run, log.append, exclude=held)
    assert not set(table.paths) & held
    assert set(table.paths) == set(paths[:80])  # every other training image, within the budget
    assert len(images) == 80 and images[0].shape == (32, 32, 3)
    # A small budget still represents every label that has a positive among those images.
    small = ExportConfig(run_dir=str(tmp_path), calibration_size=10)
    _, few = representative_images(small, run, log.append, exclude=held)
    assert len(few) == 10 and not set(few.paths) & held
    present = read_labels_csv(tmp_path / TRAIN_SPLIT).subset(range(80)).y.any(axis=0)
    assert np.array_equal(few.y.any(axis=0), present)


def test_calibration_from_held_out_images_only_is_a_data_error(split_run, tmp_path):
    run = split_run(slice(0, 40), slice(0, 40))
    config = ExportConfig(run_dir=str(tmp_path))
    _, _, held = held_out_images(config, run, lambda _: None)
    with pytest.raises(DataError, match="every calibration image is also a held-out image"):
        representative_images(config, run, lambda _: None, exclude=held)
