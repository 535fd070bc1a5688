"""The input normalisation as the int8 converter should see it: shift first, then scale.

Our models take raw 0-255 pixels and normalise them with a Rescaling layer, x * a + b. The
converter makes that a MUL then an ADD on int8 tensors, and calibrates the MUL's output on its
own: for EfficientNet-Lite0's (p - 127) / 128 it got a step of 0.0117 (1.5 pixel levels) where
the pixels had 1, so every image lost input precision before the first convolution, whose
edge-detecting kernels amplify exactly that noise. Written as (x + b/a) * a, the ADD of a whole
number to whole-numbered pixels is exact at scale 1, and the converter folds the MUL into the
first convolution's weights: one exact op instead of two lossy ones (measured in
benchmarks/bm_int8.py and the README). The float model is the same function; only the
conversion sees this copy, which shares every other layer (and weight) with the original.
"""

from __future__ import annotations

import numpy as np

SHIFT_TOLERANCE = 1e-6  # b / a must be this close to a whole number for the ADD to be exact


def whole_shift(scale: float, offset: float) -> int | None:
    """b / a as an integer when it is one (and the rescaling has an offset at all), else None."""
    if offset == 0 or scale == 0 or not np.isfinite(scale) or not np.isfinite(offset):
        return None
    shift = offset / scale
    k = round(shift)
    return int(k) if abs(shift - k) <= SHIFT_TOLERANCE * max(1.0, abs(shift)) else None


def shift_then_scale(model, probe: np.ndarray | None = None):
    """`model` with a leading Rescaling(a, offset=b) split into Rescaling(1, b/a) then
    Rescaling(a), when b/a is a whole number; otherwise `model` itself.

    With `probe` (a few uint8 images), the copy must give the original's outputs on them (float
    rounding aside), else the original is returned: a conversion never sees a different function.
    """
    import keras

    if len(model.inputs) != 1 or len(model.layers) < 2:
        return model
    first = model.layers[1]
    if not isinstance(first, keras.layers.Rescaling) or first.input is not model.inputs[0]:
        return model
    try:
        scale, offset = float(first.scale), float(first.offset)
    except (TypeError, ValueError):  # per-channel scale or offset: leave it to the converter
        return model
    shift = whole_shift(scale, offset)
    if shift is None:
        return model
    inputs = keras.Input(model.inputs[0].shape[1:], name=model.inputs[0].name)
    x = keras.layers.Rescaling(1.0, offset=float(shift), name="shift")(inputs)
    x = keras.layers.Rescaling(scale, name="scale")(x)
    rest = keras.Model(first.output, model.outputs[0], name="rest")
    copy = keras.Model(inputs, rest(x), name=model.name)
    if probe is not None and len(probe):
        batch = np.asarray(probe, dtype=np.float32)
        want = np.asarray(model(batch, training=False))
        got = np.asarray(copy(batch, training=False))
        if not np.allclose(got, want, atol=1e-5, rtol=1e-4):
            return model
    return copy
