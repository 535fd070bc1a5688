"""Stage 1 on cached features: the head trains on pooled backbone features computed once.

In stage 1 the backbone is frozen and its batch norm in inference mode, so an image's pooled
features never change: computing them once and training the head (dropout + the sigmoid Dense
layer, the model's own layers, shared) on them replaces a backbone pass per image per epoch by
one pass in all. What it gives up is augmentation in stage 1 (each image is seen as it is);
stage 2 still augments. benchmarks/bm_pretrained.py measures both: see the README.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

from ..model.models import OUTPUT_NAME, get_backbone

POOL_NAME = "gap"  # the pooling layer every pretrainable arch ends its body with (model/models.py)
BATCH = 32


def usable(model) -> bool:
    """Whether `model` has the layout this needs: backbone -> pooling -> dropout -> head."""
    names = [layer.name for layer in model.layers[-3:]]
    return get_backbone(model) is not None and names == [POOL_NAME, "dropout", OUTPUT_NAME]


def pooled_features(model, x) -> np.ndarray:
    """(n, features) float32: the pooled backbone output of every image in `x`, in row order.

    `x` is a uint8 array or a streamed `ShardView`; one batch is in memory as float at a time.
    """
    import keras
    import tensorflow as tf

    extractor = keras.Model(model.input, model.get_layer(POOL_NAME).output)
    call = tf.function(lambda b: extractor(b, training=False), reduce_retracing=True)
    out = [call(tf.convert_to_tensor(b, dtype=tf.float32)).numpy() for b in _batches(x)]
    width = int(extractor.output.shape[-1])
    return np.concatenate(out) if out else np.zeros((0, width), np.float32)


def head_model(model):
    """A model of the head alone, on pooled features; its layers are `model`'s (shared weights)."""
    import keras

    width = int(model.get_layer(POOL_NAME).output.shape[-1])
    inputs = keras.Input((width,), name="pooled_features")
    x = model.get_layer("dropout")(inputs)
    return keras.Model(inputs, model.get_layer(OUTPUT_NAME)(x), name="head")


class Rows:
    """Cached features read as a `ShardView` is (batches in row order): what validation scores."""

    def __init__(self, x: np.ndarray) -> None:
        self.x = x

    def __len__(self) -> int:
        return len(self.x)

    def batches(self, size: int) -> Iterator[np.ndarray]:
        for i in range(0, len(self.x), size):
            yield self.x[i : i + size]


def feature_dataset(features: np.ndarray, y: np.ndarray, batch_size: int, seed: int):
    import tensorflow as tf

    ds = tf.data.Dataset.from_tensor_slices((features, y.astype(np.float32)))
    ds = ds.shuffle(len(features), seed=seed, reshuffle_each_iteration=True)
    return ds.batch(batch_size).prefetch(tf.data.AUTOTUNE)


def _batches(x) -> Iterator[np.ndarray]:
    return (Rows(x) if isinstance(x, np.ndarray) else x).batches(BATCH)  # an array or a ShardView
