"""Parity metrics between the Keras model and its TFLite export: small pure numpy functions.

Every function takes (n_samples, n_labels) arrays and returns per-label numpy arrays (or a
float), raising `ValueError` on empty input or mismatched shapes. A NaN anywhere counts as an
infinite difference / a disagreement, so a model that emits NaN can never pass a gate.
"""

from __future__ import annotations

import math

import numpy as np

from edge_runtime.evaluation.metrics import binarize, mean_average_precision

# The int8 sigmoid output has a fixed scale of 1/256: no tolerance on raw probabilities of a
# full-integer model may be tighter than one step.
INT8_OUTPUT_STEP = 1.0 / 256.0


def _pair(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    if a.shape != b.shape or a.ndim != 2:
        raise ValueError(
            f"outputs must be two 2-D arrays of one shape, got {a.shape} and {b.shape}"
        )
    if a.shape[0] == 0:
        raise ValueError("no samples to compare")
    return a, b


def _abs_diff(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a, b = _pair(a, b)
    d = np.abs(a - b)
    return np.where(np.isnan(d), np.inf, d)


def max_abs_diff(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Per-label maximum absolute difference of probabilities (inf where either is NaN)."""
    return _abs_diff(a, b).max(axis=0)


def mean_abs_diff(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Per-label mean absolute difference of probabilities (inf where either is NaN)."""
    return _abs_diff(a, b).mean(axis=0)


def decision_agreement(
    a: np.ndarray, b: np.ndarray, thr_a, thr_b, tie_band: float = 0.0
) -> np.ndarray:
    """Per-label fraction of samples where both models take the same yes/no decision.

    Side `a` is judged at `thr_a`, side `b` at `thr_b`. The gate passes the same thresholds for
    both, which isolates what the conversion changed; with the device's re-calibrated thresholds
    for `b` it shows what a user sees change. A NaN score is a disagreement. With `tie_band`,
    a sample whose score `a` lies strictly within `tie_band` of `thr_a` counts as agreeing
    whatever `b` decides (see `near_threshold`).
    """
    a, b = _pair(a, b)
    da, db = binarize(a, thr_a), binarize(b, thr_b)
    same = (da == db) & ~np.isnan(a) & ~np.isnan(b)
    if tie_band > 0:
        same |= near_threshold(a, thr_a, tie_band) & ~np.isnan(b)
    return same.mean(axis=0)


def near_threshold(a: np.ndarray, thr_a, band: float) -> np.ndarray:
    """(n, labels) bool: score strictly within `band` of its label's threshold (never for NaN).

    An int8 sigmoid can only output multiples of 1/256: a reference score within one such step
    of the threshold can land on either side of it in a model that is exact up to that last
    rounding (half a step) and one step of the kernel's own arithmetic. Such a flip says nothing
    about the conversion; the int8 gate does not count it (measured: about 40% of the flips of
    good int8 conversions, 2% of a bad one's; benchmarks/bm_int8.py).
    """
    a = np.asarray(a, dtype=np.float64)
    t = np.broadcast_to(np.asarray(thr_a, dtype=np.float64), a.shape[-1:])
    return np.abs(a - t) < band


def map_drop(y_true: np.ndarray, reference: np.ndarray, candidate: np.ndarray) -> float:
    """mAP(reference) - mAP(candidate) against the ground truth; inf if the candidate has NaN."""
    reference, candidate = _pair(reference, candidate)
    if np.asarray(y_true).shape != reference.shape:
        raise ValueError(
            f"ground truth {np.asarray(y_true).shape} does not match outputs {reference.shape}"
        )
    if np.isnan(candidate).any():
        return math.inf
    ref, cand = mean_average_precision(y_true, reference), mean_average_precision(y_true, candidate)
    if math.isnan(ref) or math.isnan(cand):
        return 0.0  # no label has a positive example: mAP says nothing either way
    return float(ref - cand)
