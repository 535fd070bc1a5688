"""Multi-label-safe augmentation, one image at a time inside the training stream.

Augmentation runs in the tf.data pipeline (`trainer.data.streaming`), not as layers in the model, so
the saved/exported model holds none of it. Images stay float32 in 0-255 (the model's first
layer rescales), and with augmentation off the stream yields exactly the `load_image` pixels
(a test checks this: no train/serve skew).
"""

from __future__ import annotations

from ..config import Augment


def augment_fn(aug: Augment, h: int, w: int):
    """A traceable `image -> image` for float32 (h, w, 3) images in 0-255."""
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
