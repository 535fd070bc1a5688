"""Keras -> TFLite conversion for the four quantization modes, builtin ops only."""

from __future__ import annotations

import contextlib
import itertools
import os
import sys
import tempfile
from collections.abc import Callable, Iterable, Iterator

import numpy as np

from edge_common.versions import UnsupportedVersion
from edge_runtime.errors import EdgeError, first_line

from . import tf_internals
from .modes import QuantMode, WeightRounding, WeightScales
from .normalisation import shift_then_scale
from .rounding import rounded_weights


class ConversionError(EdgeError):
    """The converter failed, or produced ops the device runtimes cannot run."""


def convert(
    model,
    mode: QuantMode | str,
    representative: Callable[[], Iterable[np.ndarray]] | None = None,
    scales: WeightScales | str | None = None,
    rounding: WeightRounding | str = WeightRounding.NEAREST,
    split_normalisation: bool = False,
) -> bytes:
    """Convert a Keras model to TFLite bytes (no metadata).

    `representative` (int8 only) yields uint8 HxWx3 images from the one preprocessing path; the
    converter sees them as float32 0-255, exactly what the model's Rescaling layer expects.
    `scales=WeightScales.PER_TENSOR` (int8 only) gives each weight tensor one scale instead of one
    per output channel (the converter's default): every per-channel scale costs 12 bytes (float32
    scale + int64 zero point), which on a small model is a fifth of the file, but folded batch
    norm can leave channels with very different ranges, so per-tensor is riskier (the parity gate
    will say). The switch is private to TensorFlow: `tf_internals` checks it before and its
    effect after; a converter that ignored it is a `ConversionError`, never a per-channel file.
    `rounding=WeightRounding.SUM_PRESERVING` (int8 only) puts every spatial kernel on the
    converter's own grid first, rounded so that its sum survives (exporter/rounding.py); the
    converter then has nothing left to round. The model's weights are restored afterwards.
    `split_normalisation` (int8 only) hands the converter the model with its input Rescaling
    written as an exact shift then a scale (exporter/normalisation.py), the same function.
    Only TFLite builtin ops are allowed: select-TF (Flex) ops need a runtime the device lacks.
    """
    import tensorflow as tf

    mode = QuantMode(mode)
    per_tensor = scales is not None and WeightScales(scales) is WeightScales.PER_TENSOR
    target = model
    if mode is QuantMode.INT8 and split_normalisation and representative is not None:
        probe = list(itertools.islice(representative(), 4))
        target = shift_then_scale(model, np.stack(probe) if probe else None)
    conv = tf.lite.TFLiteConverter.from_keras_model(target)
    conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
    if mode is QuantMode.FLOAT16:
        conv.optimizations = [tf.lite.Optimize.DEFAULT]
        conv.target_spec.supported_types = [tf.float16]
    elif mode is QuantMode.DYNAMIC:
        conv.optimizations = [tf.lite.Optimize.DEFAULT]
    elif mode is QuantMode.INT8:
        if representative is None:
            raise ConversionError("int8 needs representative images for calibration")

        def gen():
            for img in representative():
                yield [np.asarray(img, dtype=np.float32)[None]]

        conv.optimizations = [tf.lite.Optimize.DEFAULT]
        conv.representative_dataset = gen
        conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        # uint8 input: raw camera pixels go in without any arithmetic on the device (the model's
        # Rescaling is folded into the input quantization). The output stays float32: the
        # sigmoid's int8 output (scale 1/256) is dequantized exactly by one tiny op, so any
        # consumer reads probabilities without knowing quantization parameters.
        conv.inference_input_type = tf.uint8
        conv.inference_output_type = tf.float32
        if per_tensor:
            try:
                tf_internals.disable_per_channel(conv)  # no public switch exists for this
            except UnsupportedVersion as exc:
                raise ConversionError(str(exc)) from None
    elif mode is not QuantMode.FLOAT32:
        raise ConversionError(f"cannot convert with mode {mode.value!r}; pick a concrete mode")
    balanced = mode is QuantMode.INT8 and WeightRounding(rounding) is WeightRounding.SUM_PRESERVING
    try:
        with _captured_output():
            if balanced:
                with rounded_weights(model, per_channel=not per_tensor):
                    data = conv.convert()
            else:
                data = conv.convert()
    except Exception as exc:  # the converter raises ConverterError, RuntimeError, ValueError...
        raise ConversionError(
            f"TFLite conversion ({mode.value}) failed: {first_line(exc)}"
        ) from exc
    if mode is QuantMode.INT8 and per_tensor:
        try:
            tf_internals.require_per_tensor(data)
        except UnsupportedVersion as exc:
            raise ConversionError(str(exc)) from None
    bad = [op for op in op_names(data) if not _is_builtin(op)]
    if bad:
        raise ConversionError(
            f"converted model uses non-builtin ops the device cannot run: {sorted(set(bad))}"
        )
    return data


@contextlib.contextmanager
def _captured_output() -> Iterator[None]:
    """Swallow what the converter prints while it runs.

    Keras prints "Saved artifact at ..." and the endpoint signatures to stdout (which must hold
    only our JSON), and TF's C++ code logs to file descriptor 2 directly, so both descriptors are
    pointed at a temporary file, not just sys.stdout.
    """
    sys.stdout.flush()
    sys.stderr.flush()
    saved = os.dup(1), os.dup(2)
    with tempfile.TemporaryFile() as sink:
        os.dup2(sink.fileno(), 1)
        os.dup2(sink.fileno(), 2)
        try:
            with contextlib.redirect_stdout(sys.stderr):
                yield
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            os.close(saved[0])
            os.close(saved[1])


def op_names(model: bytes) -> list[str]:
    """Operator names of a TFLite model in graph order (see `edge_runtime.inference.backend.op_names`)."""
    from edge_runtime.inference.backend import OP_LISTING_TESTED
    from edge_runtime.inference.backend import op_names as listed

    names = listed(model)
    if names is None:
        raise ConversionError(
            "cannot list the converted model's ops with this interpreter package "
            f"(tested: {OP_LISTING_TESTED})"
        )
    return names


def _is_builtin(op_name: str) -> bool:
    return not (
        op_name.startswith("Flex") or op_name in ("CUSTOM", "DELEGATE") or op_name.islower()
    )
