"""Per-label decision thresholds that maximise F1: fitted by training and re-fitted after export.

Training-side only (the device reads thresholds from the model file, it never fits them).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from edge_runtime.evaluation.metrics import check_pair, ranked_cuts


def best_f1_threshold(
    y_true_col: np.ndarray,
    scores_col: np.ndarray,
    default: float = 0.5,
    prior: float | None = None,
    slack: float = 0.0,
) -> float:
    """The threshold that maximises F1 of one label; `default` if it has no positive.

    Candidates are the gaps between consecutive distinct scores; the threshold is put at the
    midpoint of the best gap, which keeps it away from both neighbouring scores (robust to the
    small score shifts of quantization). Ties in F1 go to the candidate nearest `prior` when one
    is given (re-calibrating an exported model should not move a threshold across a flat stretch
    of the F1 curve for nothing), else to the higher threshold (fewer false alarms). With a
    `prior`, candidates within `slack` of the best F1 count as ties: a threshold then moves only
    for a real gain, not to chase one or two validation images.
    """
    y = (np.asarray(y_true_col).ravel() > 0.5).astype(np.int64)
    s = np.asarray(scores_col, dtype=np.float64).ravel()
    n_pos = int(y.sum())
    if n_pos == 0 or s.size == 0:
        return float(default if prior is None else prior)
    s, last, tp = ranked_cuts(y, s)  # cut after each index in `last`
    k = last + 1  # predicted positives at each cut
    f1 = 2 * tp / (k + n_pos)
    # Midpoint of each gap; past the lowest score, go just under it (everything positive).
    below = np.r_[s[last[:-1] + 1], max(s[-1] - 1e-3, 0.0)]
    candidates = (s[last] + below) / 2.0
    ties = np.flatnonzero(
        f1 >= f1.max() - (slack if prior is not None else 0.0)
    )  # decreasing threshold
    best = ties[0] if prior is None else ties[np.argmin(np.abs(candidates[ties] - prior))]
    return float(candidates[best])


def calibrate_thresholds(
    y_true: np.ndarray,
    scores: np.ndarray,
    default: float = 0.5,
    prior: Sequence[float] | np.ndarray | None = None,
    slack: float = 0.0,
) -> np.ndarray:
    """Per-label F1-maximising thresholds (see `best_f1_threshold`; `prior`: one per label)."""
    y, s = check_pair(y_true, scores)
    pri = [None] * y.shape[1] if prior is None else [float(p) for p in prior]
    return np.array(
        [best_f1_threshold(y[:, j], s[:, j], default, pri[j], slack) for j in range(y.shape[1])]
    )
