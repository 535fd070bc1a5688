"""The export stage's configuration and per-mode parity tolerances."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path

from .model_metadata import ModelInfo
from .modes import (
    AUTO_ORDER,
    INT8_PER_CHANNEL,
    INT8_PER_TENSOR,
    Candidate,
    QuantMode,
    WeightRounding,
    WeightScales,
)
from .parity import INT8_OUTPUT_STEP


@dataclass(frozen=True)
class Tolerances:
    """Limits the exported model must stay within against Keras (None: not judged, only shown)."""

    max_abs: float | None = None  # per label, max |p_tflite - p_keras|
    mean_abs: float | None = None  # per label, mean |p_tflite - p_keras|
    min_agreement: float = 0.98  # per label, fraction of equal yes/no decisions
    max_map_drop: float = 0.02  # mAP(Keras) - mAP(TFLite) against ground truth
    # Absolute quality: the exported model's mAP on the held-out truth must reach this. Parity
    # alone passes a model that learned nothing (its TFLite twin agrees with it perfectly).
    min_map: float | None = None


# float32 should be the same network up to summation order; float16 weights move scores a little;
# dynamic and int8 move them by whole quantization steps, so they are judged by what a user sees
# (decisions and ranking), not by raw probability differences.
DEFAULT_TOLERANCES: dict[QuantMode, Tolerances] = {
    QuantMode.FLOAT32: Tolerances(
        max_abs=1e-4, mean_abs=1e-5, min_agreement=0.99, max_map_drop=0.001
    ),
    QuantMode.FLOAT16: Tolerances(
        max_abs=0.02, mean_abs=0.002, min_agreement=0.98, max_map_drop=0.01
    ),
    QuantMode.DYNAMIC: Tolerances(min_agreement=0.98, max_map_drop=0.02),
    QuantMode.INT8: Tolerances(min_agreement=0.98, max_map_drop=0.02),
}


@dataclass(frozen=True)
class ExportConfig:
    """Everything `export()` needs; the CLI builds one of these from its options."""

    run_dir: str
    out: str = "model.tflite"
    quant: QuantMode = QuantMode.INT8
    data: str | None = None  # CSV of calibration images (default: the run's training split)
    # CSV of held-out images for the gate (default: the run's val split)
    val_data: str | None = None
    calibration_size: int = 300
    weight_scales: WeightScales = WeightScales.AUTO  # int8 only
    # int8 only: kernel sums kept through rounding (exporter/rounding.py; benchmarks/bm_int8.py)
    weight_rounding: WeightRounding = WeightRounding.SUM_PRESERVING
    # int8 only: the input Rescaling converted as an exact shift, then a scale folded into the
    # first convolution (exporter/normalisation.py); False: as built (two requantizing ops)
    split_normalisation: bool = True
    overrides: dict = field(default_factory=dict)  # Tolerances fields to override, any mode
    report: str | None = None  # parity JSON (default: beside `out`, `<stem>.parity.json`)
    threads: int | None = None
    backend: str | None = None
    seed: int = 0
    cache_dir: str | None = None
    # Descriptive fields of the standard TFLite metadata (name, description, version, author, license).
    model_info: ModelInfo = field(default_factory=ModelInfo)
    # Standard score calibration mapping each label's threshold to 0.5, so that MediaPipe and the
    # Task Library, with their one global threshold at 0.5, decide exactly as edge-infer does.
    score_calibration: bool = False

    def __post_init__(self) -> None:
        object.__setattr__(self, "quant", QuantMode(self.quant))
        object.__setattr__(self, "weight_scales", WeightScales(self.weight_scales))
        object.__setattr__(self, "weight_rounding", WeightRounding(self.weight_rounding))
        unknown = set(self.overrides) - set(Tolerances.__dataclass_fields__)
        if unknown:
            raise ValueError(f"unknown tolerance(s): {sorted(unknown)}")
        for cand in self.candidates():
            self.tolerances(cand.mode)  # refuse impossible tolerances before any work

    def tolerances(self, mode: QuantMode) -> Tolerances:
        tol = replace(
            DEFAULT_TOLERANCES[mode], **{k: v for k, v in self.overrides.items() if v is not None}
        )
        if mode is QuantMode.INT8 and tol.max_abs is not None and tol.max_abs < INT8_OUTPUT_STEP:
            raise ValueError(
                f"max_abs {tol.max_abs} is below one int8 output step (1/256 = {INT8_OUTPUT_STEP:.5f}): "
                "an int8 sigmoid cannot be that close; judge decisions and mAP instead"
            )
        return tol

    def candidates(self) -> tuple[Candidate, ...]:
        """The conversions to try, in order; the first that passes its gate is kept."""
        forced = {
            WeightScales.PER_TENSOR: INT8_PER_TENSOR,
            WeightScales.PER_CHANNEL: INT8_PER_CHANNEL,
        }
        if self.quant is QuantMode.AUTO:
            order = AUTO_ORDER
        elif self.quant is QuantMode.INT8:
            order = (INT8_PER_TENSOR, INT8_PER_CHANNEL)
        else:
            return (Candidate(self.quant),)
        if self.weight_scales in forced:
            keep = forced[self.weight_scales]
            order = tuple(c for c in order if c.mode is not QuantMode.INT8 or c == keep)
        return order

    def report_path(self) -> Path:
        if self.report:
            return Path(self.report)
        out = Path(self.out)
        return out.with_name(out.stem + ".parity.json")
