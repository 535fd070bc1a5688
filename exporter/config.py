"""The export stage's configuration and per-mode parity tolerances."""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path

from .convert import QuantMode
from .parity import INT8_OUTPUT_STEP


@dataclass(frozen=True)
class Tolerances:
    """Limits the exported model must stay within against Keras (None: not judged, only shown)."""

    max_abs: float | None = None  # per label, max |p_tflite - p_keras|
    mean_abs: float | None = None  # per label, mean |p_tflite - p_keras|
    min_agreement: float = 0.98  # per label, fraction of equal yes/no decisions
    max_map_drop: float = 0.02  # mAP(Keras) - mAP(TFLite) against ground truth


# float32 should be the same network up to summation order; float16 weights move scores a little;
# dynamic and int8 move them by whole quantization steps, so they are judged by what a user sees
# (decisions and ranking), not by raw probability differences.
DEFAULT_TOLERANCES: dict[QuantMode, Tolerances] = {
    QuantMode.FLOAT32: Tolerances(max_abs=1e-4, mean_abs=1e-5, min_agreement=0.99, max_map_drop=0.001),
    QuantMode.FLOAT16: Tolerances(max_abs=0.02, mean_abs=0.002, min_agreement=0.98, max_map_drop=0.01),
    QuantMode.DYNAMIC: Tolerances(min_agreement=0.98, max_map_drop=0.02),
    QuantMode.INT8: Tolerances(min_agreement=0.98, max_map_drop=0.02),
}

# `auto` tries these (mode, int8 per-channel weights), smallest file first, and keeps the first
# that passes its gate. Per-tensor int8 saves the per-channel scales (a fifth of a small model's
# file) when the model tolerates it.
AUTO_ORDER = (
    (QuantMode.INT8, False),
    (QuantMode.INT8, True),
    (QuantMode.DYNAMIC, True),
    (QuantMode.FLOAT16, True),
    (QuantMode.FLOAT32, True),
)


@dataclass(frozen=True)
class ExportConfig:
    """Everything `export()` needs; the CLI builds one of these from its options."""

    run_dir: str
    out: str = "model.tflite"
    quant: QuantMode = QuantMode.INT8
    data: str | None = None  # CSV of calibration images (default: the run's training split)
    val_data: str | None = None  # CSV of held-out images for the gate (default: the run's val split)
    calibration_size: int = 300
    # int8 weight scales: True per output channel, False per tensor, None (default) per tensor if
    # that passes the gate, else per channel - the smaller file whenever the model tolerates it.
    per_channel: bool | None = None
    overrides: dict = field(default_factory=dict)  # Tolerances fields to override, any mode
    report: str | None = None  # parity JSON (default: beside `out`, `<stem>.parity.json`)
    threads: int | None = None
    backend: str | None = None
    seed: int = 0
    cache_dir: str | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "quant", QuantMode(self.quant))
        unknown = set(self.overrides) - set(Tolerances.__dataclass_fields__)
        if unknown:
            raise ValueError(f"unknown tolerance(s): {sorted(unknown)}")
        for mode, _ in self.candidates():
            self.tolerances(mode)  # refuse impossible tolerances before any work

    def tolerances(self, mode: QuantMode) -> Tolerances:
        tol = replace(DEFAULT_TOLERANCES[mode], **{k: v for k, v in self.overrides.items() if v is not None})
        if mode is QuantMode.INT8 and tol.max_abs is not None and tol.max_abs < INT8_OUTPUT_STEP:
            raise ValueError(
                f"max_abs {tol.max_abs} is below one int8 output step (1/256 = {INT8_OUTPUT_STEP:.5f}): "
                "an int8 sigmoid cannot be that close; judge decisions and mAP instead"
            )
        return tol

    def candidates(self) -> tuple[tuple[QuantMode, bool], ...]:
        """(mode, per_channel) pairs to try, in order (per_channel only matters for int8)."""
        if self.quant is QuantMode.AUTO:
            return AUTO_ORDER
        if self.quant is QuantMode.INT8 and self.per_channel is None:
            return ((QuantMode.INT8, False), (QuantMode.INT8, True))
        return ((self.quant, self.per_channel is not False),)

    def report_path(self) -> Path:
        if self.report:
            return Path(self.report)
        out = Path(self.out)
        return out.with_name(out.stem + ".parity.json")
