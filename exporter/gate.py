"""The parity gate: compare Keras and TFLite outputs, judge them against tolerances."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from edge_runtime import atomic
from edge_runtime.evaluation.metrics import multilabel_report

from . import parity
from .config import Tolerances


@dataclass(frozen=True)
class ParityReport:
    """Per-label and overall agreement of one exported model with Keras, and the verdict."""

    mode: str
    n_samples: int
    labels: list[str]
    # label, max_abs, mean_abs, agreement (both at the Keras thresholds: the conversion's own
    # effect, which the gate judges; for int8, flips of images Keras scored within one output
    # step of the threshold are not counted), raw_agreement (every flip counted),
    # device_agreement (TFLite at its re-calibrated thresholds: what a user sees change),
    # threshold_keras, threshold_tflite
    per_label: list[dict]
    keras: dict  # map, micro_f1, macro_f1 against the ground truth
    tflite: dict
    map_drop: float
    tolerances: dict
    failures: list[str] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return not self.failures

    def to_dict(self) -> dict:
        d = asdict(self)
        d["passed"] = self.passed
        return d

    def save(self, path: str | Path) -> Path:
        return atomic.write_json(path, self.to_dict())

    def summary(self) -> dict:
        """The short form embedded in the model file."""
        return {
            "mode": self.mode,
            "passed": self.passed,
            "n_samples": self.n_samples,
            "map_keras": self.keras["map"],
            "map_tflite": self.tflite["map"],
            "min_agreement": min((r["agreement"] for r in self.per_label), default=math.nan),
            "max_abs": max((r["max_abs"] for r in self.per_label), default=math.nan),
        }

    def table(self, worst: int = 5) -> str:
        """The worst labels first (lowest agreement, then largest difference)."""
        rows = sorted(self.per_label, key=lambda r: (r["agreement"], -r["max_abs"]))[:worst]
        lines = [
            f"parity {self.mode}: {'PASS' if self.passed else 'FAIL'} on {self.n_samples} held-out images",
            f"  {'label':<18} {'agree':>7} {'raw':>7} {'device':>7} {'max|d|':>8} {'mean|d|':>8} {'thr keras':>9} {'thr tflite':>10}",
        ]
        for r in rows:
            lines.append(
                f"  {r['label'][:18]:<18} {r['agreement']:>7.3f} {r.get('raw_agreement', math.nan):>7.3f} "
                f"{r['device_agreement']:>7.3f} "
                f"{r['max_abs']:>8.4f} {r['mean_abs']:>8.5f} "
                f"{r['threshold_keras']:>9.3f} {r['threshold_tflite']:>10.3f}"
            )
        lines.append(
            f"  mAP keras {self.keras['map']:.4f} tflite {self.tflite['map']:.4f} (drop {self.map_drop:+.4f}); "
            f"macro-F1 keras {self.keras['macro_f1']:.4f} tflite {self.tflite['macro_f1']:.4f}"
        )
        lines += [f"  FAILED: {f}" for f in self.failures]
        return "\n".join(lines)


def check_parity(
    mode: str,
    labels: Sequence[str],
    y_true: np.ndarray,
    keras_scores: np.ndarray,
    tflite_scores: np.ndarray,
    keras_thresholds: np.ndarray,
    tflite_thresholds: np.ndarray,
    tol: Tolerances,
) -> ParityReport:
    """Compute every parity metric and list each tolerance that is exceeded."""
    mx = parity.max_abs_diff(keras_scores, tflite_scores)
    mean = parity.mean_abs_diff(keras_scores, tflite_scores)
    raw = parity.decision_agreement(keras_scores, tflite_scores, keras_thresholds, keras_thresholds)
    # int8 outputs are multiples of 1/256: a flip of an image Keras scored within one step of the
    # threshold is the output's rounding, not the conversion's error (parity.near_threshold).
    band = parity.INT8_OUTPUT_STEP if mode == "int8" else 0.0
    agree = parity.decision_agreement(
        keras_scores, tflite_scores, keras_thresholds, keras_thresholds, tie_band=band
    )
    device = parity.decision_agreement(
        keras_scores, tflite_scores, keras_thresholds, tflite_thresholds
    )
    drop = parity.map_drop(y_true, keras_scores, tflite_scores)
    per_label = [
        {
            "label": name,
            "max_abs": float(mx[j]),
            "mean_abs": float(mean[j]),
            "agreement": float(agree[j]),
            "raw_agreement": float(raw[j]),  # every flip counted, those within one step too
            "device_agreement": float(device[j]),
            "threshold_keras": float(keras_thresholds[j]),
            "threshold_tflite": float(tflite_thresholds[j]),
        }
        for j, name in enumerate(labels)
    ]
    failures = []
    tflite_overall = _overall(y_true, tflite_scores, tflite_thresholds, labels)
    # The overall verdicts first: they lead the one-line reason. NaN never passes.
    if tol.min_map is not None and not tflite_overall["map"] >= tol.min_map:
        failures.append(
            f"mAP {tflite_overall['map']:.4f} on the held-out truth < required {tol.min_map}"
        )
    if not drop <= tol.max_map_drop:
        failures.append(f"mAP drop {drop:.4f} > {tol.max_map_drop}")
    for r in per_label:
        if tol.max_abs is not None and not r["max_abs"] <= tol.max_abs:
            failures.append(f"{r['label']}: max |diff| {r['max_abs']:.5f} > {tol.max_abs}")
        if tol.mean_abs is not None and not r["mean_abs"] <= tol.mean_abs:
            failures.append(f"{r['label']}: mean |diff| {r['mean_abs']:.6f} > {tol.mean_abs}")
        if not r["agreement"] >= tol.min_agreement:
            failures.append(
                f"{r['label']}: decision agreement {r['agreement']:.3f} < {tol.min_agreement}"
                + (
                    f" (raw {r['raw_agreement']:.3f})"
                    if r["raw_agreement"] != r["agreement"]
                    else ""
                )
            )

    return ParityReport(
        mode=mode,
        n_samples=int(keras_scores.shape[0]),
        labels=list(labels),
        per_label=per_label,
        keras=_overall(y_true, keras_scores, keras_thresholds, labels),
        tflite=tflite_overall,
        map_drop=float(drop),
        tolerances=asdict(tol),
        failures=failures,
    )


def _overall(
    y_true: np.ndarray, scores: np.ndarray, thr: np.ndarray, labels: Sequence[str]
) -> dict:
    """mAP, micro and macro F1 against the ground truth (NaN for outputs holding NaN)."""
    if np.isnan(scores).any():
        return {"map": math.nan, "micro_f1": math.nan, "macro_f1": math.nan}
    rep = multilabel_report(y_true, scores, thr, list(labels))
    return {k: rep[k] for k in ("map", "micro_f1", "macro_f1")}
