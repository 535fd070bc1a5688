"""Keras -> TFLite export with embedded metadata and a parity gate.

from exporter import ExportConfig, QuantMode, export
result = export(ExportConfig("runs/shapes", out="shapes.tflite", quant=QuantMode.INT8))
"""

from .config import DEFAULT_TOLERANCES, ExportConfig, Tolerances
from .convert import ConversionError, convert
from .export import ExportError, ExportResult, ParityError, export
from .gate import ParityReport
from .model_metadata import ModelInfo
from .modes import QuantMode, WeightRounding, WeightScales

__all__ = [
    "ConversionError",
    "DEFAULT_TOLERANCES",
    "ExportConfig",
    "ExportError",
    "ExportResult",
    "ModelInfo",
    "ParityError",
    "ParityReport",
    "QuantMode",
    "Tolerances",
    "WeightRounding",
    "WeightScales",
    "convert",
    "export",
]
