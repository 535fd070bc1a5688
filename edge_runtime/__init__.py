"""Lean on-device runtime: one preprocessing path, TFLite inference, per-label thresholds.

Never imports TensorFlow or Keras (a test checks `sys.modules`).
"""

from .errors import (
    BackendError,
    DataError,
    EdgeError,
    ImageError,
    LabelsError,
    ModelError,
    SourceError,
)
from .inference.classifier import Classifier, Outcome, Prediction
from .inference.decode import decode_many
from .inference.preprocess import PREPROCESSING, load_image
from .live.events import Hysteresis

__version__ = "0.1.0"

__all__ = [
    "BackendError",
    "Classifier",
    "DataError",
    "EdgeError",
    "Hysteresis",
    "ImageError",
    "LabelsError",
    "ModelError",
    "Outcome",
    "PREPROCESSING",
    "Prediction",
    "SourceError",
    "__version__",
    "decode_many",
    "load_image",
]
