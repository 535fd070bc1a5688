"""The tf.data input pipeline, with multi-label-safe augmentation.

Augmentation runs here, not as layers in the model, so the saved/exported model holds none of
it. Images stay float32 in 0-255 (the model's first layer rescales), and with augmentation off
the pipeline yields exactly the `load_image` pixels (a test checks this: no train/serve skew).
"""

from __future__ import annotations

import numpy as np

from .config import Augment


def make_dataset(
    x: np.ndarray,
    y: np.ndarray,
    batch_size: int,
    augment: Augment | None = None,
    shuffle: bool = True,
    seed: int = 0,
):
    """A batched `tf.data.Dataset` of (float32 0-255 images, float32 multi-hot)."""
    import tensorflow as tf

    if not isinstance(x, np.ndarray):  # a ShardView: streamed from disk
        from .streaming import make_stream

        return make_stream(x, y, batch_size, augment, shuffle=shuffle, seed=seed)
    ds = tf.data.Dataset.from_tensor_slices((x, y.astype(np.float32)))
    if shuffle:
        ds = ds.shuffle(len(x), seed=seed, reshuffle_each_iteration=True)
    ds = ds.map(
        lambda img, lab: (tf.cast(img, tf.float32), lab), num_parallel_calls=tf.data.AUTOTUNE
    )
    if augment is not None and augment.enabled:
        fn = _augment_fn(augment, int(x.shape[1]), int(x.shape[2]))
        ds = ds.map(lambda img, lab: (fn(img), lab), num_parallel_calls=tf.data.AUTOTUNE)
    return ds.batch(batch_size).prefetch(tf.data.AUTOTUNE)


def _augment_fn(aug: Augment, h: int, w: int):
    import tensorflow as tf

    pad_h, pad_w = int(round(aug.translate * h)), int(round(aug.translate * w))

    def fn(img):
        if aug.flip:
            img = tf.image.random_flip_left_right(img)
        if aug.vflip:
            img = tf.image.random_flip_up_down(img)
        if pad_h or pad_w:
            # A translation, not a zoom: pad by reflection, then cut a window of the original
            # size. At most `translate` of each side moves out, so objects stay (mostly) in.
            img = tf.pad(img, [[pad_h, pad_h], [pad_w, pad_w], [0, 0]], mode="REFLECT")
            img = tf.image.random_crop(img, (h, w, 3))
        if aug.brightness:
            img = img + tf.random.uniform((), -aug.brightness, aug.brightness) * 255.0
        if aug.contrast:
            mean = tf.reduce_mean(img, axis=(0, 1), keepdims=True)
            img = (img - mean) * tf.random.uniform((), 1 - aug.contrast, 1 + aug.contrast) + mean
        return tf.clip_by_value(img, 0.0, 255.0)

    return fn
