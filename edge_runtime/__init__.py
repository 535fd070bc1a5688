"""Lean on-device runtime: one preprocessing path, TFLite inference, per-label thresholds.

Never imports TensorFlow or Keras (a test checks `sys.modules`).
"""
from .classifier import Classifier, Prediction
from .errors import BackendError, EdgeError, ImageError, LabelsError, ModelError
from .preprocess import PREPROCESSING, load_image

__version__ = "0.1.0"

__all__ = [
    "BackendError",
    "Classifier",
    "EdgeError",
    "ImageError",
    "LabelsError",
    "ModelError",
    "PREPROCESSING",
    "Prediction",
    "__version__",
    "load_image",
]
