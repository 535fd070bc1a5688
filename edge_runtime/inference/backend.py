"""The one place that imports an interpreter package.

Order of preference: `ai_edge_litert` (LiteRT, maintained, numpy 2), `tflite_runtime` (the
legacy package; numpy < 2; the only choice on 32-bit Raspberry Pi OS), then `tensorflow.lite`
(a development machine that has TensorFlow anyway). Nothing else in the runtime imports them.
"""

from __future__ import annotations

import importlib
from typing import Any

from ..errors import BackendError, first_line

BACKENDS: dict[str, str] = {
    "ai-edge-litert": "ai_edge_litert.interpreter",
    "tflite-runtime": "tflite_runtime.interpreter",
    "tensorflow": "tensorflow.lite",
}


def interpreter_class(backend: str | None = None) -> tuple[Any, str]:
    """Return (Interpreter class, backend name); `backend=None` picks the first available."""
    names = [backend] if backend else list(BACKENDS)
    if backend and backend not in BACKENDS:
        raise BackendError(f"unknown backend {backend!r}; choose one of {', '.join(BACKENDS)}")
    errors = []
    for name in names:
        try:
            return _resolve(BACKENDS[name]).Interpreter, name
        except Exception as exc:  # ImportError, or a numpy ABI clash raising SystemError
            errors.append(f"{name}: {type(exc).__name__}: {first_line(exc)}")
    hint = "pip install ai-edge-litert (or tflite-runtime with numpy<2 on 32-bit ARM)"
    raise BackendError(f"no TFLite interpreter available ({'; '.join(errors)}); {hint}")


def _resolve(dotted: str) -> Any:
    """The object at a dotted path, walking attributes from the top package.

    `import_module("tensorflow.lite")` returns the internal package `tensorflow/lite/__init__.py`,
    which has no `Interpreter`; the public `tf.lite` namespace is an attribute of `tensorflow`.
    """
    parts = dotted.split(".")
    obj = importlib.import_module(parts[0])
    for i, part in enumerate(parts[1:], start=1):
        try:
            obj = getattr(obj, part)
        except AttributeError:  # a submodule not imported by its parent
            obj = importlib.import_module(".".join(parts[: i + 1]))
    return obj


# The interpreter packages list a model's operators only through a private method. It is used
# here and nowhere else; where a package lacks it, op names are None ("unavailable"), not an error.
_OPS_DETAILS = "_get_ops_details"
OP_LISTING_TESTED = "ai-edge-litert 2.3, tflite-runtime 2.14, tensorflow 2.21 (tf.lite)"


def op_names(model: bytes, backend: str | None = None) -> list[str] | None:
    """Operator names of a TFLite model in graph order; None if the package cannot list them
    (its private `_get_ops_details()`, tested in OP_LISTING_TESTED, is gone or failed).

    Uses a fresh interpreter on purpose: after `allocate_tensors` a delegate (XNNPACK) has
    replaced most ops by one DELEGATE node.
    """
    cls, _ = interpreter_class(backend)
    try:
        details = getattr(cls(model_content=model), _OPS_DETAILS, None)
        if not callable(details):
            return None
        return [str(op["op_name"]) for op in details()]
    except (AttributeError, RuntimeError, ValueError, KeyError, TypeError):
        return None
