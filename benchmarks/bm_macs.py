"""Parameters and multiply-accumulates of a Keras model, counted from the layer configs.

Counted layers (everything else - BN, ReLU, pooling, Rescaling, adds - is taken as free, which
is also what batch-norm folding and fused activations make of most of it on the device):

- Conv2D:          H_out * W_out * k_h * k_w * (C_in / groups) * C_out
- DepthwiseConv2D: H_out * W_out * k_h * k_w * C_in * depth_multiplier
- Dense:           (elements of the input / C_in) * C_in * units  (applied per position)

Nested models (the MobileNetV3 backbone) are walked recursively. Shapes come from each layer's
symbolic input/output, so the batch dimension (None) is dropped.
"""

from __future__ import annotations

import math


def _shape(t) -> tuple:
    return tuple(int(d) if d is not None else 1 for d in t.shape[1:])


def layer_macs(layer) -> int | None:
    """MACs of one layer for one image, or None for a layer that is not counted."""
    kind = type(layer).__name__
    if kind not in ("Conv2D", "DepthwiseConv2D", "Dense"):
        return None
    cfg = layer.get_config()
    in_shape = _shape(layer.input)
    out_shape = _shape(layer.output)
    if kind == "Dense":
        c_in = in_shape[-1]
        positions = math.prod(in_shape[:-1]) if len(in_shape) > 1 else 1
        return int(positions * c_in * cfg["units"])
    kh, kw = cfg["kernel_size"]
    h_out, w_out = out_shape[0], out_shape[1]
    c_in = in_shape[-1]
    if kind == "DepthwiseConv2D":
        return int(h_out * w_out * kh * kw * c_in * cfg.get("depth_multiplier", 1))
    groups = cfg.get("groups", 1) or 1
    return int(h_out * w_out * kh * kw * (c_in // groups) * cfg["filters"])


def _walk(model):
    for layer in model.layers:
        if hasattr(layer, "layers") and layer.layers:  # nested Model / Sequential
            yield from _walk(layer)
        else:
            yield layer


def count(model) -> dict:
    """{params, trainable_params, macs, macs_by_type} for one image through `model`."""
    by_type: dict[str, int] = {}
    for layer in _walk(model):
        m = layer_macs(layer)
        if m is not None:
            kind = type(layer).__name__
            by_type[kind] = by_type.get(kind, 0) + m
    trainable = sum(int(math.prod(w.shape)) for w in model.trainable_weights)
    return {
        "params": int(model.count_params()),
        "trainable_params": trainable,
        "macs": int(sum(by_type.values())),
        "macs_by_type": by_type,
    }
