"""Multi-label losses with per-label positive weights.

Keras's `class_weight` is no use here: it takes the argmax of each target row, i.e. it treats a
multi-hot row as a single class. Label imbalance is handled inside the loss instead, by
weighting each label's positive term.

Losses are for training only: the saved model is uncompiled, so loading it needs no custom
object from this module.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ..errors import ConfigError

MAX_POS_WEIGHT = 10.0


def auto_pos_weights(y: np.ndarray, max_weight: float = MAX_POS_WEIGHT) -> np.ndarray:
    """clip(negatives / positives, 1, max_weight) per label.

    Rare labels get their positives up-weighted so the model does not learn "always absent";
    the floor of 1 leaves common labels alone (never down-weight positives), and the ceiling
    stops a label with a handful of positives from dominating the gradient and overfitting.
    A label with no positive gets 1 (nothing to weight).
    """
    y = np.asarray(y) > 0
    pos = y.sum(axis=0).astype(np.float64)
    neg = y.shape[0] - pos
    w = np.divide(neg, pos, out=np.ones_like(pos), where=pos > 0)
    return np.clip(w, 1.0, max_weight).astype(np.float32)


def resolve_pos_weights(spec: str | Sequence[float], y: np.ndarray) -> np.ndarray:
    """Turn the config's `pos_weight` ("auto" / "none" / list) into one weight per label."""
    n_labels = np.asarray(y).shape[1]
    if isinstance(spec, str):
        if spec == "auto":
            return auto_pos_weights(y)
        if spec == "none":
            return np.ones(n_labels, np.float32)
        raise ConfigError(f"pos_weight must be 'auto', 'none' or a list, got {spec!r}")
    w = np.asarray(spec, dtype=np.float32)
    if w.shape != (n_labels,):
        raise ConfigError(f"pos_weight has {w.size} values for {n_labels} labels")
    if np.any(w <= 0):
        raise ConfigError("pos_weight values must be > 0")
    return w


def weighted_bce(pos_weight: Sequence[float], eps: float = 1e-7):
    """Loss fn: mean over labels of -(w*y*log(p) + (1-y)*log(1-p)), p = sigmoid output."""
    from keras import ops

    w = np.asarray(pos_weight, dtype=np.float32)

    def loss(y_true, y_pred):
        y_true = ops.cast(y_true, y_pred.dtype)
        p = ops.clip(y_pred, eps, 1.0 - eps)
        term = w * y_true * ops.log(p) + (1.0 - y_true) * ops.log(1.0 - p)
        return -ops.mean(term, axis=-1)

    loss.__name__ = "weighted_bce"
    return loss  # a plain callable; Keras wraps it in a LossFunctionWrapper


def focal_loss(pos_weight: Sequence[float], gamma: float = 2.0, eps: float = 1e-7):
    """Binary focal loss (Lin et al. 2017) with per-label positive weights.

    -(w*y*(1-p)^g*log(p) + (1-y)*p^g*log(1-p)), mean over labels. Down-weights easy examples;
    opt-in, because on small data plain weighted BCE calibrates better.
    """
    from keras import ops

    w = np.asarray(pos_weight, dtype=np.float32)

    def loss(y_true, y_pred):
        y_true = ops.cast(y_true, y_pred.dtype)
        p = ops.clip(y_pred, eps, 1.0 - eps)
        pos = w * y_true * ops.power(1.0 - p, gamma) * ops.log(p)
        neg = (1.0 - y_true) * ops.power(p, gamma) * ops.log(1.0 - p)
        return -ops.mean(pos + neg, axis=-1)

    loss.__name__ = "focal_loss"
    return loss
