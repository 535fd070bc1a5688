"""Shared fixtures: small seeded demo data, made once per test session."""
from __future__ import annotations

import pytest

from trainer.demo_data import DemoConfig, make_demo_dataset


@pytest.fixture(scope="session")
def demo_data(tmp_path_factory):
    """A small demo set: (train_csv, test_csv) with 160 / 48 images of 64x64 pixels."""
    out = tmp_path_factory.mktemp("demo")
    return make_demo_dataset(DemoConfig(str(out), n_train=160, n_test=48, image_size=64, seed=0))
