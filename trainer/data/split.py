"""Multi-label train/validation split by iterative stratification.

Sechidis, Tsoumakas & Vlahavas (2011), "On the Stratification of Multi-Label Data". A random
split of multi-label data easily leaves a rare label with no validation positive (so its
threshold cannot be calibrated) or no training positive. The algorithm hands out the rarest
label's examples first, each to the fold that still needs that label most, so every label with
at least two examples lands on both sides.
"""

from __future__ import annotations

import numpy as np


def iterative_split(
    y: np.ndarray, val_fraction: float, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """Split rows of a multi-hot `y` (n, L) into (train_idx, val_idx), both sorted.

    Deterministic for a given `seed`. Rows with no label are distributed to fill the folds'
    remaining sizes. Each label with >= 2 positives gets at least one positive on each side.
    """
    y = np.asarray(y) > 0
    n = y.shape[0]
    if not 0.0 < val_fraction < 1.0:
        raise ValueError(f"val_fraction must be in (0, 1), got {val_fraction}")
    if n < 2:
        raise ValueError(f"need at least 2 rows to split, got {n}")
    rng = np.random.default_rng(seed)
    ratios = np.array([1.0 - val_fraction, val_fraction])
    n_val = int(np.clip(round(n * val_fraction), 1, n - 1))
    desired = np.array([n - n_val, n_val], dtype=np.float64)  # rows each fold still wants
    desired_lab = ratios[:, None] * y.sum(axis=0)[None, :].astype(np.float64)  # (2, L)
    fold = np.full(n, -1)
    remaining = np.ones(n, dtype=bool)
    label_left = y.sum(axis=0).astype(np.int64)

    while True:
        live = np.flatnonzero(label_left > 0)
        if live.size == 0:
            break
        # Rarest label among unassigned rows; ties broken at random for seeded variety.
        counts = label_left[live]
        rarest = live[counts == counts.min()]
        lab = int(rng.choice(rarest))
        rows = np.flatnonzero(remaining & y[:, lab])
        rows = rng.permutation(rows)
        for r in rows:
            f = _pick_fold(desired_lab[:, lab], desired, rng)
            if (
                label_left[lab] == 2
                and desired_lab[f, lab] <= 0
                and np.all(fold[y[:, lab]] != 1 - f)
            ):
                # Guarantee the rare-label promise: the last two positives split if one side has none.
                f = 1 - f
            fold[r] = f
            remaining[r] = False
            desired[f] -= 1
            desired_lab[f, y[r]] -= 1
            label_left[y[r]] -= 1
    # Rows without labels fill whatever room is left.
    for r in rng.permutation(np.flatnonzero(remaining)):
        f = int(np.argmax(desired)) if desired[0] != desired[1] else int(rng.integers(2))
        fold[r] = f
        desired[f] -= 1
    _ensure_both_sides(y, fold)
    return np.flatnonzero(fold == 0), np.flatnonzero(fold == 1)


def _pick_fold(want_label: np.ndarray, want_rows: np.ndarray, rng: np.random.Generator) -> int:
    best = np.flatnonzero(want_label == want_label.max())
    if best.size > 1:
        best = best[want_rows[best] == want_rows[best].max()]
    return int(rng.choice(best))


def _ensure_both_sides(y: np.ndarray, fold: np.ndarray) -> None:
    """Move one positive across for any label with >= 2 positives all on one side.

    The greedy pass nearly always achieves this already; the repair covers tiny data. The moved
    row is the one whose other labels suffer least (fewest labels of its own).
    """
    for j in range(y.shape[1]):
        pos = np.flatnonzero(y[:, j])
        if pos.size < 2:
            continue
        sides = fold[pos]
        for side in (0, 1):
            if np.all(sides == 1 - side):
                cand = pos[np.argsort(y[pos].sum(axis=1), kind="stable")]
                for r in cand:
                    others = np.flatnonzero(y[r])
                    # Do not take the last positive of another label away from its side.
                    ok = all(
                        np.sum(fold[y[:, k]] == fold[r]) > 1 or y[:, k].sum() < 2
                        for k in others
                        if k != j
                    )
                    if ok:
                        fold[r] = side
                        break
                sides = fold[pos]
    # Keep both folds non-empty.
    for side in (0, 1):
        if not np.any(fold == side):
            fold[int(np.argmax(fold == 1 - side))] = side
