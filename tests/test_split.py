"""trainer.data.split: iterative stratification keeps rare labels on both sides."""

from __future__ import annotations

import numpy as np

from trainer.data.split import iterative_split


def _data(seed=0, n=200):
    rng = np.random.default_rng(seed)
    y = (rng.random((n, 6)) < [0.5, 0.3, 0.2, 0.1, 0.0, 0.0]).astype(np.uint8)
    y[[3, 77], 4] = 1  # a label with exactly two positives
    y[[10, 11, 12], 5] = 1  # and one with three
    return y


def test_partition_sizes_and_determinism():
    y = _data()
    tr, va = iterative_split(y, 0.25, seed=1)
    assert sorted(np.r_[tr, va].tolist()) == list(range(len(y)))
    assert abs(len(va) - 50) <= 1
    tr2, va2 = iterative_split(y, 0.25, seed=1)
    assert tr.tolist() == tr2.tolist() and va.tolist() == va2.tolist()
    assert iterative_split(y, 0.25, seed=2)[1].tolist() != va.tolist()


def test_rare_labels_on_both_sides():
    for seed in range(10):
        y = _data(seed)
        tr, va = iterative_split(y, 0.2, seed=seed)
        for j in range(y.shape[1]):
            assert y[tr, j].sum() >= 1 and y[va, j].sum() >= 1, (seed, j)


def test_label_proportions_follow_fraction():
    y = _data(n=1000)
    tr, va = iterative_split(y, 0.2, seed=0)
    for j in range(4):
        frac = y[va, j].sum() / y[:, j].sum()
        assert abs(frac - 0.2) < 0.03


def test_rows_without_labels_and_tiny_input():
    y = np.zeros((10, 2), np.uint8)
    y[0, 0] = y[1, 0] = 1
    tr, va = iterative_split(y, 0.3, seed=0)
    assert len(va) == 3 and y[va, 0].sum() == 1 and y[tr, 0].sum() == 1
