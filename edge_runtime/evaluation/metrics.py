"""Multi-label metrics and per-label threshold calibration, in plain numpy.

The trainer, the exporter's parity gate and `edge-infer eval` on the device all use these, so a
metric means the same thing everywhere (threshold calibration, which only training and export do,
is in `edge_common.calibration`). Conventions (checked against scikit-learn in the tests):

- `y_true` is an (n_samples, n_labels) 0/1 array, `scores` the sigmoid probabilities, and a
  label is predicted present when `score >= threshold`.
- Precision, recall and F1 of a label with nothing predicted / nothing true are 0 (scikit-learn's
  `zero_division=0`).
- Average precision is the step-wise area under the precision-recall curve (no interpolation),
  as scikit-learn's `average_precision_score`. It is undefined for a label with no positive
  example: such labels get `nan` and are left out of mAP.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np


def check_pair(y_true: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(0/1 int64 truth, float64 scores), checked to be the same 2-D shape."""
    y = np.asarray(y_true)
    s = np.asarray(scores, dtype=np.float64)
    if y.ndim != 2 or s.shape != y.shape:
        raise ValueError(f"y_true {y.shape} and scores {s.shape} must be the same 2-D shape")
    return (y > 0.5).astype(np.int64), s


def binarize(scores: np.ndarray, thresholds: float | Sequence[float] | np.ndarray) -> np.ndarray:
    """0/1 decisions: score >= threshold, per label (broadcast over rows)."""
    return (np.asarray(scores) >= np.asarray(thresholds, dtype=np.float64)).astype(np.int64)


def _counts(y: np.ndarray, p: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    tp = np.sum((y == 1) & (p == 1), axis=0)
    fp = np.sum((y == 0) & (p == 1), axis=0)
    fn = np.sum((y == 1) & (p == 0), axis=0)
    return tp, fp, fn


def _div(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    return np.divide(a, b, out=np.zeros_like(a), where=b > 0)


def _prf(
    tp: np.ndarray, fp: np.ndarray, fn: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    return _div(tp, tp + fp), _div(tp, tp + fn), _div(2 * tp, 2 * tp + fp + fn)


def precision_recall_f1(
    y_true: np.ndarray, y_pred: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-label precision, recall and F1 of 0/1 predictions."""
    y, p = check_pair(y_true, y_pred)
    return _prf(*_counts(y, p.astype(np.int64)))


def ranked_cuts(y: np.ndarray, s: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Scores sorted high to low; for each distinct score, the index of its last sample and the
    true positives up to there. Only those indices are cuts: tied scores are all-or-nothing."""
    order = np.argsort(-s, kind="mergesort")
    s, y = s[order], y[order]
    last = np.r_[np.nonzero(np.diff(s))[0], s.size - 1]
    return s, last, np.cumsum(y)[last]


def average_precision(y_true_col: np.ndarray, scores_col: np.ndarray) -> float:
    """Average precision of one label; nan when it has no positive example."""
    y = (np.asarray(y_true_col).ravel() > 0.5).astype(np.int64)
    s = np.asarray(scores_col, dtype=np.float64).ravel()
    n_pos = int(y.sum())
    if n_pos == 0:
        return math.nan
    _, last, tps = ranked_cuts(y, s)
    precision = tps / (last + 1)
    recall = tps / n_pos
    return float(np.sum(np.diff(np.r_[0.0, recall]) * precision))


def average_precisions(y_true: np.ndarray, scores: np.ndarray) -> np.ndarray:
    y, s = check_pair(y_true, scores)
    return np.array([average_precision(y[:, j], s[:, j]) for j in range(y.shape[1])])


def mean_average_precision(y_true: np.ndarray, scores: np.ndarray) -> float:
    """Mean of per-label AP over labels that have at least one positive; nan if none has."""
    return _mean_defined(average_precisions(y_true, scores))


def _mean_defined(ap: np.ndarray) -> float:
    ap = ap[~np.isnan(ap)]
    return float(ap.mean()) if ap.size else math.nan


def multilabel_report(
    y_true: np.ndarray,
    scores: np.ndarray,
    thresholds: float | Sequence[float] | np.ndarray,
    labels: Sequence[str],
) -> dict:
    """All metrics at the given thresholds, as a JSON-ready dict.

    `per_label[name]` holds precision, recall, f1, support, ap, threshold; the top level holds
    micro/macro precision, recall and F1, mAP, subset accuracy, Hamming loss and element-wise
    binary accuracy (reported, never used to select a model: it rewards predicting "absent").
    """
    y, s = check_pair(y_true, scores)
    if len(labels) != y.shape[1]:
        raise ValueError(f"{len(labels)} label names for {y.shape[1]} columns")
    thr = np.broadcast_to(np.asarray(thresholds, dtype=np.float64), (y.shape[1],))
    p = binarize(s, thr)
    tp, fp, fn = _counts(y, p)
    prec, rec, f1 = _prf(tp, fp, fn)
    ap = average_precisions(y, s)
    per_label = {
        name: {
            "precision": float(prec[j]),
            "recall": float(rec[j]),
            "f1": float(f1[j]),
            "support": int(y[:, j].sum()),
            "ap": None if math.isnan(ap[j]) else float(ap[j]),
            "threshold": float(thr[j]),
        }
        for j, name in enumerate(labels)
    }
    TP, FP, FN = tp.sum(), fp.sum(), fn.sum()
    n = y.shape[0]
    return {
        "n_samples": int(n),
        "micro_precision": float(_div(TP, TP + FP)),
        "micro_recall": float(_div(TP, TP + FN)),
        "micro_f1": float(_div(2 * TP, 2 * TP + FP + FN)),
        "macro_precision": float(prec.mean()) if prec.size else math.nan,
        "macro_recall": float(rec.mean()) if rec.size else math.nan,
        "macro_f1": float(f1.mean()) if f1.size else math.nan,
        "map": _mean_defined(ap) if n else math.nan,
        "subset_accuracy": float(np.mean(np.all(p == y, axis=1))) if n else math.nan,
        "hamming_loss": float(np.mean(p != y)) if n else math.nan,
        "binary_accuracy": float(np.mean(p == y)) if n else math.nan,
        "per_label": per_label,
    }


def format_report(report: dict, title: str = "") -> str:
    """A fixed-width table of a `multilabel_report` for terminals."""
    rows = [title] if title else []
    rows.append(
        f"{'label':<20} {'thr':>6} {'prec':>6} {'rec':>6} {'f1':>6} {'ap':>6} {'support':>8}"
    )
    for name, m in report["per_label"].items():
        ap = "-" if m["ap"] is None else f"{m['ap']:.3f}"
        rows.append(
            f"{name[:20]:<20} {m['threshold']:>6.3f} {m['precision']:>6.3f} {m['recall']:>6.3f} "
            f"{m['f1']:>6.3f} {ap:>6} {m['support']:>8d}"
        )
    rows.append(
        f"micro-F1 {report['micro_f1']:.3f}  macro-F1 {report['macro_f1']:.3f}  "
        f"mAP {report['map']:.3f}  subset-acc {report['subset_accuracy']:.3f}  "
        f"hamming {report['hamming_loss']:.3f}  (n={report['n_samples']})"
    )
    return "\n".join(rows)
