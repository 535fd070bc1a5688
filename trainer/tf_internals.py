"""The trainer's one door to TensorFlow/Keras internals (private names): nothing else in
`trainer/` touches one.

Today there is one: `multiworker_fit_fixes`, for two places where Keras 3's `fit` misuses
`MultiWorkerMirroredStrategy`. It replaces the private `strategy.extended._reduce_to`, so it
checks at first use that the name exists (else `UnsupportedVersion`, naming the range tested)
and warns when Keras lies outside that range (`edge_common.versions.KERAS`): a later Keras may
have fixed `fit`, or changed it so that the fix no longer fits.
"""

from __future__ import annotations

from edge_common.versions import KERAS, check, missing

_USE = "the MultiWorkerMirroredStrategy fix for Keras fit (trainer/tf_internals.py)"


def multiworker_fit_fixes(strategy):
    """`strategy` (a MultiWorkerMirroredStrategy) patched where Keras 3's `fit` misuses it.

    Both places are in keras/src/backend/tensorflow/trainer.py (Keras 3.15); MirroredStrategy is
    unaffected. (1) `_maybe_symbolic_build` reduces a whole (images, labels) batch in one
    `strategy.reduce` call, but this strategy reduces single values only: map over the
    structure, as MirroredStrategy does itself. (2) `reduce_per_replica` averages every
    per-replica log (the loss, each metric: scalars) with `reduce("MEAN", v, axis=0)`, which
    fails on a scalar: a scalar's mean over the replicas is `axis=None`.
    """
    import keras
    import tensorflow as tf

    check(KERAS, keras.__version__, _USE)
    ext = strategy.extended
    reduce_to = getattr(ext, "_reduce_to", None)
    if not callable(reduce_to):
        raise missing(KERAS, keras.__version__, "tf.distribute `extended._reduce_to`", _USE)

    def mapped(reduce_op, value, destinations, options):
        return tf.nest.map_structure(
            lambda v: reduce_to(reduce_op, v, destinations, options), value
        )

    ext._reduce_to = mapped
    reduce = strategy.reduce

    def reduce_scalars_over_replicas(reduce_op, value, axis=None):
        if axis is not None and _rank(value) == 0:
            axis = None
        return reduce(reduce_op, value, axis=axis)

    strategy.reduce = reduce_scalars_over_replicas
    return strategy


def _rank(value) -> int | None:
    parts = getattr(value, "values", None)
    first = parts[0] if isinstance(parts, tuple) and parts else value
    shape = getattr(first, "shape", None)
    return None if shape is None else shape.rank
