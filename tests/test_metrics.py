"""The numpy metrics against scikit-learn, and threshold calibration."""

from __future__ import annotations

import math

import numpy as np
import pytest
from sklearn import metrics as skm

from edge_common import calibration as C
from edge_runtime.evaluation import metrics as M


def _data(seed: int, n: int = 200, labels: int = 5):
    rng = np.random.default_rng(seed)
    y = (rng.random((n, labels)) < rng.uniform(0.05, 0.6, labels)).astype(int)
    # Scores that carry signal, with ties (rounded, as an int8 model produces them).
    s = np.clip(y * rng.uniform(0.2, 0.8, (n, labels)) + rng.uniform(0, 0.6, (n, labels)), 0, 1)
    s[:, 0] = np.round(s[:, 0] * 256) / 256
    return y, s


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_report_matches_sklearn(seed):
    y, s = _data(seed)
    thr = np.array([0.3, 0.5, 0.5, 0.6, 0.45])
    rep = M.multilabel_report(y, s, thr, list("abcde"))
    p = (s >= thr).astype(int)
    sk_p, sk_r, sk_f, sk_sup = skm.precision_recall_fscore_support(y, p, zero_division=0)
    for j, name in enumerate("abcde"):
        m = rep["per_label"][name]
        assert m["precision"] == pytest.approx(sk_p[j])
        assert m["recall"] == pytest.approx(sk_r[j])
        assert m["f1"] == pytest.approx(sk_f[j])
        assert m["support"] == sk_sup[j]
        assert m["ap"] == pytest.approx(skm.average_precision_score(y[:, j], s[:, j]))
    assert rep["micro_f1"] == pytest.approx(skm.f1_score(y, p, average="micro", zero_division=0))
    assert rep["macro_f1"] == pytest.approx(skm.f1_score(y, p, average="macro", zero_division=0))
    assert rep["map"] == pytest.approx(skm.average_precision_score(y, s, average="macro"))
    assert rep["subset_accuracy"] == pytest.approx(skm.accuracy_score(y, p))
    assert rep["hamming_loss"] == pytest.approx(skm.hamming_loss(y, p))


def test_label_without_positives_is_left_out_of_map():
    y, s = _data(3)
    y[:, 2] = 0
    rep = M.multilabel_report(y, s, 0.5, list("abcde"))
    assert rep["per_label"]["c"]["ap"] is None
    keep = [0, 1, 3, 4]
    assert rep["map"] == pytest.approx(
        skm.average_precision_score(y[:, keep], s[:, keep], average="macro")
    )


def test_all_ties_and_perfect_scores():
    y = np.array([[1], [0], [1], [0]])
    assert M.average_precision(y[:, 0], np.full(4, 0.5)) == pytest.approx(0.5)
    assert M.average_precision(y[:, 0], y[:, 0] * 0.9) == pytest.approx(1.0)
    assert math.isnan(M.average_precision(np.zeros(4), np.ones(4)))


def test_shape_mismatch_raises():
    with pytest.raises(ValueError):
        M.multilabel_report(np.zeros((3, 2)), np.zeros((3, 3)), 0.5, ["a", "b"])
    with pytest.raises(ValueError):
        M.multilabel_report(np.zeros((3, 2)), np.zeros((3, 2)), 0.5, ["a"])


def _best_f1_bruteforce(y, s):
    best = -1.0
    for t in np.unique(np.r_[s, 1.01]):
        best = max(best, skm.f1_score(y, (s >= t).astype(int), zero_division=0))
    return best


@pytest.mark.parametrize("seed", range(5))
def test_calibrated_thresholds_reach_the_best_f1(seed):
    y, s = _data(seed, n=120)
    thr = C.calibrate_thresholds(y, s)
    for j in range(y.shape[1]):
        got = skm.f1_score(y[:, j], (s[:, j] >= thr[j]).astype(int), zero_division=0)
        assert got == pytest.approx(_best_f1_bruteforce(y[:, j], s[:, j]))
        # Strictly between two observed scores (or below all): robust to small score shifts.
        assert not np.any(np.isclose(s[:, j], thr[j], atol=1e-9))


def test_threshold_defaults_without_positives_and_handles_all_positive():
    assert C.best_f1_threshold(np.zeros(5), np.linspace(0, 1, 5)) == 0.5
    y = np.ones(4)
    t = C.best_f1_threshold(y, np.array([0.2, 0.4, 0.6, 0.8]))
    assert t <= 0.2
    assert C.best_f1_threshold(np.array([]), np.array([])) == 0.5


def test_calibration_beats_fixed_half_on_shifted_scores():
    rng = np.random.default_rng(7)
    y = (rng.random((300, 1)) < 0.3).astype(int)
    s = np.clip(0.1 + 0.25 * y + rng.normal(0, 0.05, y.shape), 0, 1)  # all below 0.5
    thr = C.calibrate_thresholds(y, s)
    f_cal = M.multilabel_report(y, s, thr, ["x"])["macro_f1"]
    f_half = M.multilabel_report(y, s, 0.5, ["x"])["macro_f1"]
    assert f_half == 0.0 and f_cal > 0.9


def test_f1_ties_go_to_the_prior_when_given():
    # Cutting after the 1st sample or after all 4 gives the same F1 (2/3 either way).
    y = np.array([1, 0, 0, 1])
    s = np.array([0.9, 0.8, 0.7, 0.3])
    assert C.best_f1_threshold(y, s) == pytest.approx(0.85)
    assert C.best_f1_threshold(y, s, prior=0.4) == pytest.approx(0.2995)
    assert C.calibrate_thresholds(y[:, None], s[:, None], prior=[0.4])[0] == pytest.approx(0.2995)


def test_slack_keeps_the_prior_unless_the_gain_is_real():
    # 10 positives: cutting after rank 9 gives F1 18/19 = 0.947 (threshold ~0.55), after rank 11
    # F1 20/21 = 0.952 (threshold ~0.45): a gain of one image, within a slack of 0.05.
    y = np.array([1] * 9 + [0] + [1] + [0] * 9)
    s = np.linspace(0.95, 0.05, y.size)
    best = C.best_f1_threshold(y, s)
    kept = C.best_f1_threshold(y, s, prior=0.56, slack=0.05)
    assert best == pytest.approx(0.4525, abs=1e-3) and kept == pytest.approx(0.5475, abs=1e-3)
    assert C.best_f1_threshold(y, s, prior=0.56, slack=0.0) == best  # no slack: the optimum
    # Without a prior the slack does nothing: the exact optimum is returned.
    assert C.best_f1_threshold(y, s, slack=0.05) == best
    f1 = lambda t: skm.f1_score(y, (s >= t).astype(int))  # noqa: E731
    assert f1(kept) >= f1(best) - 0.05
