"""The export stage's closed choices: quantization mode and int8 weight scales."""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum


class QuantMode(str, Enum):
    """How the exported model stores weights and computes."""

    FLOAT32 = "float32"
    FLOAT16 = "float16"  # weights stored as float16, computed in float32 on CPU
    DYNAMIC = "dynamic"  # int8 weights, float activations (dynamic-range quantization)
    INT8 = "int8"  # full integer: int8 weights and activations, uint8 input
    AUTO = "auto"  # smallest mode that passes the parity gate


class WeightScales(str, Enum):
    """How int8 weights are scaled (the only mode where this is a choice).

    One scale per tensor is the smaller file (a per-channel scale costs 12 bytes: a fifth of a
    small model); one per output channel is the robust choice when folded batch norm leaves
    channels with very different ranges. AUTO tries per tensor and keeps it if it passes the gate.
    """

    AUTO = "auto"
    PER_TENSOR = "per-tensor"
    PER_CHANNEL = "per-channel"


class WeightRounding(str, Enum):
    """How int8 weights are rounded onto the converter's grid (the grid itself never changes).

    SUM_PRESERVING picks the rounding direction of a few taps of every spatial kernel so that its
    sum survives (exporter/rounding.py: a near-cancelling edge kernel otherwise leaks flat image
    regions into its channel); NEAREST leaves every weight to the converter's round-to-nearest.
    """

    SUM_PRESERVING = "sum-preserving"
    NEAREST = "nearest"


@dataclass(frozen=True)
class Candidate:
    """One conversion to try: a concrete mode and, for int8, its weight scales."""

    mode: QuantMode
    scales: WeightScales | None = None  # int8 only: PER_TENSOR or PER_CHANNEL

    @property
    def label(self) -> str:
        return self.mode.value + (
            f" {self.scales.value}" if self.scales is WeightScales.PER_TENSOR else ""
        )


INT8_PER_TENSOR = Candidate(QuantMode.INT8, WeightScales.PER_TENSOR)
INT8_PER_CHANNEL = Candidate(QuantMode.INT8, WeightScales.PER_CHANNEL)
# `auto` tries these, smallest file first, and keeps the first that passes its gate.
AUTO_ORDER = (
    INT8_PER_TENSOR,
    INT8_PER_CHANNEL,
    Candidate(QuantMode.DYNAMIC),
    Candidate(QuantMode.FLOAT16),
    Candidate(QuantMode.FLOAT32),
)
