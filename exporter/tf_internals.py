"""The exporter's one door to TensorFlow internals (private names): nothing else in `exporter/`
touches one.

Today there is one: the TFLite converter has no public switch for one int8 weight scale per
tensor (instead of one per output channel), only the private attribute
`_experimental_disable_per_channel`. Setting an attribute a later TensorFlow no longer reads
would silently give per-channel scales, so the switch is checked before (the attribute must
exist on the converter; the version must be one tested, `edge_common.versions.TENSORFLOW`, else
a warning) and its effect after: `require_per_tensor` reads the converted model's scales through
the interpreter's public tensor details and fails loudly when any tensor has more than one.
"""

from __future__ import annotations

from edge_common.versions import TENSORFLOW, UnsupportedVersion, check, missing

_SWITCH = "_experimental_disable_per_channel"
_USE = "per-tensor int8 weight scales (exporter/tf_internals.py)"


def disable_per_channel(converter) -> None:
    """Ask `converter` (a `tf.lite.TFLiteConverter`) for one weight scale per tensor."""
    import tensorflow as tf

    check(TENSORFLOW, tf.__version__, _USE)
    # The converter sets its private defaults in __init__: an attribute that is not there has
    # been renamed or removed, and setting it would change nothing.
    if not hasattr(converter, _SWITCH):
        raise missing(TENSORFLOW, tf.__version__, f"TFLiteConverter.{_SWITCH}", _USE)
    setattr(converter, _SWITCH, True)


def max_scales_per_tensor(model: bytes) -> int:
    """The most quantization scales any one tensor of `model` has (1 for per-tensor int8, the
    channel count for per-channel weights, 0 for a float model), from the interpreter's public
    `get_tensor_details()`."""
    from edge_runtime.inference.backend import interpreter_class

    cls, _ = interpreter_class()
    details = cls(model_content=model).get_tensor_details()
    return max((len(d["quantization_parameters"]["scales"]) for d in details), default=0)


def require_per_tensor(model: bytes) -> None:
    """`UnsupportedVersion` unless every tensor of the converted `model` has one scale at most:
    proof that `disable_per_channel` took effect."""
    most = max_scales_per_tensor(model)
    if most > 1:
        import tensorflow as tf

        raise UnsupportedVersion(
            f"per-tensor int8 was asked for but the converter of tensorflow {tf.__version__} "
            f"wrote {most} scales on one tensor: its private switch {_SWITCH} no longer works; "
            f"tested: {TENSORFLOW}. Use --per-channel, or a tested TensorFlow"
        )
