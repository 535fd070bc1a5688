"""Export a trained run to one self-describing, parity-checked `.tflite` file.

`export()` reads as its four steps: load the run, compute the Keras reference on held-out
images, try each candidate conversion until one passes its gate, write the result.
"""

from __future__ import annotations

import importlib.util
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from edge_common.calibration import calibrate_thresholds
from edge_common.run import MANIFEST_FILE, RunDir, RunDirError, RunManifest, open_run
from edge_runtime import __version__, atomic
from edge_runtime.errors import EdgeError, first_line
from edge_runtime.modelfile import metadata

from .config import ExportConfig
from .convert import ConversionError, convert, op_names
from .gate import ParityReport, check_parity
from .model_metadata import ModelInfo, write_model
from .modes import Candidate, QuantMode, WeightScales

# F1 a re-calibrated threshold must gain on the held-out images before it moves away from the
# Keras threshold: on a plateau of the F1 curve, a move chases one or two images and generalises
# worse (measured: one int8 threshold moved by 0.48 for nothing, and test agreement fell to 0.98).
RECALIBRATION_SLACK = 0.01


class ExportError(EdgeError):
    """The run cannot be exported: missing or corrupt model, bad labels, no images."""


class ParityError(EdgeError):
    """The exported model failed its parity gate (the report says where)."""

    def __init__(self, message: str, result: ExportResult) -> None:
        super().__init__(message)
        self.result = result


@dataclass(frozen=True)
class Attempt:
    """One candidate conversion and its verdict."""

    mode: QuantMode
    passed: bool
    reason: str
    size_bytes: int | None = None
    scales: WeightScales | None = None  # int8 only

    @property
    def label(self) -> str:
        return Candidate(self.mode, self.scales).label

    def line(self) -> str:
        size = f" {self.size_bytes / 1024:.1f} KiB" if self.size_bytes else ""
        reason = f" - {self.reason}" if self.reason else ""
        return f"tried {self.label}:{size} {'pass' if self.passed else 'fail'}{reason}"


@dataclass(frozen=True)
class ExportResult:
    """What an export produced; `out` is None when no mode passed its gate."""

    out: str | None
    mode: QuantMode
    weight_scales: WeightScales | None  # int8 only: per-tensor or per-channel weight scales
    size_bytes: int
    keras_size_bytes: int
    ops: list[str]
    parity: ParityReport | None
    attempts: list[Attempt]
    metadata: dict
    report_path: str
    seconds: float

    @property
    def passed(self) -> bool:
        return self.out is not None

    def to_dict(self) -> dict:
        return atomic.to_jsonable(
            {
                "passed": self.passed,
                "out": self.out,
                "mode": self.mode,
                "weight_scales": self.weight_scales,
                "size_bytes": self.size_bytes,
                "keras_size_bytes": self.keras_size_bytes,
                "size_ratio": self.size_bytes / self.keras_size_bytes
                if self.keras_size_bytes
                else None,
                "ops": self.ops,
                "attempts": [asdict(a) for a in self.attempts],
                "parity": self.parity.to_dict() if self.parity else None,
                "metadata": self.metadata,
                "report_path": self.report_path,
                "seconds": self.seconds,
            }
        )

    def save(self, path: str | Path | None = None) -> Path:
        return atomic.write_json(path or self.report_path, self.to_dict())

    def summary(self) -> str:
        lines = [a.line() for a in self.attempts]
        if self.parity:
            lines.append(self.parity.table())
        verdict = (
            f"wrote {self.out}" if self.passed else "NOT written: no mode passed its parity gate"
        )
        lines.append(
            f"{Candidate(self.mode, self.weight_scales).label}: {self.size_bytes / 1024:.1f} KiB (Keras file "
            f"{self.keras_size_bytes / 1024:.1f} KiB), {len(self.ops)} ops [{', '.join(sorted(set(self.ops)))}]; "
            f"{verdict}; report {self.report_path}"
        )
        return "\n".join(lines)


@dataclass(frozen=True)
class Reference:
    """What every candidate is judged against: held-out images, their truth and Keras's view."""

    x: np.ndarray  # uint8 held-out images through the one preprocessing path
    y: np.ndarray
    keras_scores: np.ndarray
    keras_thresholds: np.ndarray
    calibration: list[np.ndarray]  # int8 representative images (never held-out ones)


@dataclass(frozen=True)
class Converted:
    """One candidate's complete file (flatbuffer + metadata) and its verdict."""

    candidate: Candidate
    data: bytes
    report: ParityReport


def export(config: ExportConfig, log: Callable[[str], None] | None = None) -> ExportResult:
    """Convert, check parity, and atomically write `config.out` only if the gate passes.

    Raises ExportError / ConversionError for a run that cannot be exported and ParityError
    (carrying the result, whose JSON report is already written) when no mode passes.
    """
    log = log or (lambda msg: print(msg, file=sys.stderr))
    t0 = time.perf_counter()
    run = load_run(config)
    ref = reference(run, config, log)
    attempts: list[Attempt] = []
    chosen: Converted | None = None
    for cand in config.candidates():
        log(f"converting {cand.label} ...")
        try:
            chosen = try_candidate(run, ref, cand, config)
        except ConversionError as exc:
            if len(config.candidates()) == 1:
                raise
            attempts.append(Attempt(cand.mode, False, str(exc), scales=cand.scales))
            continue
        rep = chosen.report
        reason = "; ".join(rep.failures[:3]) + (" ..." if len(rep.failures) > 3 else "")
        attempts.append(Attempt(cand.mode, rep.passed, reason, len(chosen.data), cand.scales))
        if rep.passed:
            break
    if chosen is None:
        raise ConversionError(
            "no mode could be converted: " + "; ".join(a.reason for a in attempts)
        )
    return write(run, chosen, attempts, config, time.perf_counter() - t0)


def reference(run: Run, config: ExportConfig, log: Callable[[str], None]) -> Reference:
    """Held-out images and Keras's scores on them; int8 calibration images when a candidate needs them."""
    from .data import held_out_images, representative_images

    x, y, paths = held_out_images(config, run, log)
    needs_calibration = any(c.mode is QuantMode.INT8 for c in config.candidates())
    calib = representative_images(config, run, log, exclude=paths)[0] if needs_calibration else []
    log(f"Keras reference on {len(x)} held-out images")
    scores = run.model.predict(x.astype(np.float32), batch_size=64, verbose=0)
    return Reference(x, y, scores, np.asarray(run.manifest.thresholds, dtype=np.float64), calib)


def try_candidate(run: Run, ref: Reference, cand: Candidate, config: ExportConfig) -> Converted:
    """Convert one candidate, run it the way the device does, judge it, embed the final metadata."""
    flat = convert(
        run.model,
        cand.mode,
        lambda: iter(ref.calibration),
        scales=cand.scales,
        rounding=config.weight_rounding,
        split_normalisation=config.split_normalisation,
    )
    # Judge a complete file (flatbuffer + metadata) loaded the way the device loads it; the
    # thresholds in it are replaced below, once the exported model's own scores are known.
    info = _model_info(run, config)
    data = write_model(flat, _metadata(run, cand, ref.keras_thresholds, None, None, config), info)
    tfl_scores = device_scores(data, ref.x, config)
    # Quantization shifts scores, so the device gets thresholds fitted to its own outputs;
    # a threshold leaves the Keras one only for a real F1 gain (RECALIBRATION_SLACK).
    tfl_thr = calibrate_thresholds(
        ref.y, tfl_scores, prior=ref.keras_thresholds, slack=RECALIBRATION_SLACK
    )
    report = check_parity(
        cand.mode.value,
        run.labels,
        ref.y,
        ref.keras_scores,
        tfl_scores,
        ref.keras_thresholds,
        tfl_thr,
        config.tolerances(cand.mode),
    )
    n_calib = len(ref.calibration) if cand.mode is QuantMode.INT8 else None
    meta = _metadata(run, cand, tfl_thr, report, n_calib, config)
    return Converted(
        cand, write_model(flat, meta, info, score_calibration=config.score_calibration), report
    )


def write(
    run: Run, chosen: Converted, attempts: list[Attempt], config: ExportConfig, seconds: float
) -> ExportResult:
    """Write the JSON report (always, first: a failed gate must say where) and, on a pass, the model."""
    passed = chosen.report.passed
    result = ExportResult(
        out=str(config.out) if passed else None,
        mode=chosen.candidate.mode,
        weight_scales=chosen.candidate.scales,
        size_bytes=len(chosen.data),
        keras_size_bytes=run.keras_size,
        ops=op_names(metadata.strip(chosen.data)),
        parity=chosen.report,
        attempts=attempts,
        metadata=metadata.read(chosen.data) or {},
        report_path=str(config.report_path()),
        seconds=seconds,
    )
    try:
        result.save()
        if passed:
            atomic.write_bytes(config.out, chosen.data)
    except OSError as exc:
        raise ExportError(
            f"cannot write {exc.filename or config.out}: {exc.strerror or exc}"
        ) from None
    if not passed:
        raise ParityError(
            f"{chosen.candidate.label} export failed its parity gate: {attempts[-1].reason}", result
        )
    return result


@dataclass(frozen=True)
class Run:
    """A checked run directory (edge_common.run) with its Keras model loaded."""

    dir: RunDir
    model: object

    @property
    def run_dir(self) -> Path:
        return self.dir.path

    @property
    def manifest(self) -> RunManifest:
        return self.dir.manifest

    @property
    def labels(self) -> list[str]:
        return list(self.manifest.labels)

    @property
    def input_size(self) -> tuple[int, int]:
        return self.manifest.input_size

    @property
    def keras_size(self) -> int:
        return self.dir.model_path.stat().st_size


def load_run(config: ExportConfig) -> Run:
    """Open and check the run directory (bounded, in well under a second), then load its model."""
    if importlib.util.find_spec("keras") is None:  # the device-only install: say so first
        raise ExportError("edge-export needs TensorFlow: pip install 'edge-multilabel[train]'")
    try:
        run = open_run(config.run_dir)
    except RunDirError as exc:
        raise ExportError(str(exc)) from None
    import keras

    model_path = run.model_path
    try:
        model = keras.models.load_model(model_path, compile=False, safe_mode=True)
    except Exception as exc:  # Keras raises ValueError, OSError, zipfile errors ... for bad files
        raise ExportError(
            f"{model_path}: cannot load Keras model ({first_line(exc)[:200]})"
        ) from None
    act = getattr(model.layers[-1], "activation", None)
    act_name = getattr(act, "__name__", str(act))
    if act_name != "sigmoid":
        raise ExportError(
            f"{model_path}: the output layer's activation is {act_name!r}, not 'sigmoid': a multi-label "
            "model needs independent per-label probabilities"
        )
    n_out = model.output_shape[-1]
    labels = run.manifest.labels
    if n_out != len(labels):
        raise ExportError(
            f"{run.path / MANIFEST_FILE}: {len(labels)} labels, but the model has {n_out} outputs"
        )
    return Run(run, model)


def device_scores(data: bytes, images: np.ndarray, config: ExportConfig) -> np.ndarray:
    """Scores through the runtime's own loading path, exactly as the device gets them."""
    from edge_runtime.inference.classifier import Classifier

    clf = Classifier.from_bytes(
        data, name="<export>", threads=config.threads, backend=config.backend
    )
    return np.asarray(clf.scores(images), dtype=np.float64)


def _metadata(
    run: Run,
    cand: Candidate,
    thresholds: np.ndarray,
    report: ParityReport | None,
    n_calibration: int | None,
    config: ExportConfig,
) -> dict:
    m = run.manifest
    metrics = m.metrics.calibrated
    w, h = run.input_size
    return {
        "labels": run.labels,
        # NaN scores (a broken conversion) give NaN thresholds, which no reader accepts: such a
        # model fails its gate anyway, and keeps the trainer's threshold so its report can be read.
        "thresholds": [
            float(t) if np.isfinite(t) else float(k) for t, k in zip(thresholds, m.thresholds)
        ],
        "thresholds_source": f"re-calibrated (max F1; moved from the Keras threshold only for an F1 gain "
        f"over {RECALIBRATION_SLACK}) on the exported model's outputs on held-out images"
        if report
        else "trainer",
        "input": {
            "width": w,
            "height": h,
            "channels": 3,
            "dtype": "uint8" if cand.mode is QuantMode.INT8 else "float32",
        },
        "preprocessing": m.preprocessing,
        "arch": m.arch,
        "quantization": cand.mode.value,
        "weight_scales": cand.scales.value if cand.scales else None,
        "weight_rounding": config.weight_rounding.value if cand.mode is QuantMode.INT8 else None,
        "training": {
            # A report's fields (edge_runtime.evaluation.metrics.multilabel_report).
            "map": metrics.get("map"),
            "macro_f1": metrics.get("macro_f1"),
            "micro_f1": metrics.get("micro_f1"),
            "n_val": metrics.get("n_samples"),
            "epochs": m.training.epochs_run,
            # The trainer's verdict against chance travels with the model (`edge-infer info` shows it).
            "verdict": m.verdict,
            # By file name only: the training machine's paths are nobody else's business.
            "source_csv": Path(m.data.source_csv).name,
        },
        "parity": report.summary() if report else None,
        "calibration_images": n_calibration,
        "toolkit_version": __version__,
        "versions": m.versions,
        "exported_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }


def _model_info(run: Run, config: ExportConfig) -> ModelInfo:
    """The standard metadata's descriptive fields: the user's, else defaults without paths."""
    given = config.model_info
    labels = ", ".join(run.labels[:10]) + (
        f", ... ({len(run.labels)} in all)" if len(run.labels) > 10 else ""
    )
    return ModelInfo(
        name=given.name or run.run_dir.resolve().name,
        description=given.description
        or f"Multi-label image classifier ({run.manifest.arch}): "
        f"one independent probability per label ({labels}).",
        version=given.version or time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        author=given.author,
        license=given.license,
    )
