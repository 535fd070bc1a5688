"""Export a trained run to one self-describing, parity-checked `.tflite` file."""
from __future__ import annotations

import json
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from edge_runtime import __version__, atomic, metadata
from edge_runtime.errors import EdgeError, first_line
from edge_common.calibration import calibrate_thresholds

from .config import ExportConfig
from .convert import ConversionError, QuantMode, convert, op_names
from .gate import ParityReport, check_parity


# F1 a re-calibrated threshold must gain on the held-out images before it moves away from the
# Keras threshold: on a plateau of the F1 curve, a move chases one or two images and generalises
# worse (measured: one int8 threshold moved by 0.48 for nothing, and test agreement fell to 0.98).
RECALIBRATION_SLACK = 0.01


class ExportError(EdgeError):
    """The run cannot be exported: missing or corrupt model, bad labels, no images."""


class ParityError(EdgeError):
    """The exported model failed its parity gate (the report says where)."""

    def __init__(self, message: str, result: "ExportResult") -> None:
        super().__init__(message)
        self.result = result


@dataclass(frozen=True)
class Attempt:
    mode: str
    passed: bool
    reason: str
    size_bytes: int | None = None
    per_channel: bool | None = None  # int8 only

    @property
    def label(self) -> str:
        return mode_label(self.mode, self.per_channel)

    def line(self) -> str:
        size = f" {self.size_bytes / 1024:.1f} KiB" if self.size_bytes else ""
        reason = f" - {self.reason}" if self.reason else ""
        return f"tried {self.label}:{size} {'pass' if self.passed else 'fail'}{reason}"


def mode_label(mode: str, per_channel: bool | None) -> str:
    return mode + (" per-tensor" if per_channel is False else "")


@dataclass(frozen=True)
class ExportResult:
    """What an export produced; `out` is None when no mode passed its gate."""

    out: str | None
    mode: str
    per_channel: bool | None  # int8 only: per-channel (True) or per-tensor (False) weight scales
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
        return {
            "passed": self.passed,
            "out": self.out,
            "mode": self.mode,
            "per_channel": self.per_channel,
            "size_bytes": self.size_bytes,
            "keras_size_bytes": self.keras_size_bytes,
            "size_ratio": self.size_bytes / self.keras_size_bytes if self.keras_size_bytes else None,
            "ops": self.ops,
            "attempts": [asdict(a) for a in self.attempts],
            "parity": self.parity.to_dict() if self.parity else None,
            "metadata": self.metadata,
            "report_path": self.report_path,
            "seconds": self.seconds,
        }

    def save(self, path: str | Path | None = None) -> Path:
        return atomic.write_json(path or self.report_path, self.to_dict())

    def summary(self) -> str:
        lines = [a.line() for a in self.attempts]
        if self.parity:
            lines.append(self.parity.table())
        verdict = f"wrote {self.out}" if self.passed else "NOT written: no mode passed its parity gate"
        lines.append(
            f"{mode_label(self.mode, self.per_channel)}: {self.size_bytes / 1024:.1f} KiB (Keras file {self.keras_size_bytes / 1024:.1f} KiB), "
            f"{len(self.ops)} ops [{', '.join(sorted(set(self.ops)))}]; {verdict}; report {self.report_path}"
        )
        return "\n".join(lines)


def export(config: ExportConfig, log: Callable[[str], None] | None = None) -> ExportResult:
    """Convert, check parity, and atomically write `config.out` only if the gate passes.

    Raises ExportError / ConversionError for a run that cannot be exported and ParityError
    (carrying the result, whose JSON report is already written) when no mode passes.
    """
    log = log or (lambda msg: print(msg, file=sys.stderr))
    t0 = time.perf_counter()
    run = _load_run(config)
    from .data import held_out_images, representative_images

    val_x, val_y, val_paths = held_out_images(config, run, log)
    # Only full-integer conversion needs calibration images.
    needs_calibration = any(mode is QuantMode.INT8 for mode, _ in config.candidates())
    calib = representative_images(config, run, log, exclude=val_paths) if needs_calibration else []
    log(f"Keras reference on {len(val_x)} held-out images")
    keras_scores = run.model.predict(val_x.astype(np.float32), batch_size=64, verbose=0)
    keras_thr = np.asarray(run.manifest["thresholds"], dtype=np.float64)

    attempts: list[Attempt] = []
    chosen = None
    for mode, per_channel in config.candidates():
        per_channel = per_channel if mode is QuantMode.INT8 else None
        log(f"converting {mode_label(mode.value, per_channel)} ...")
        try:
            flat = convert(run.model, mode, lambda: iter(calib), per_channel=per_channel is not False)
        except ConversionError as exc:
            if len(config.candidates()) == 1:
                raise
            attempts.append(Attempt(mode.value, False, str(exc), per_channel=per_channel))
            continue
        # Judge a complete file (flatbuffer + metadata) loaded the way the device loads it; the
        # thresholds in it are replaced below, once the exported model's own scores are known.
        data = metadata.embed(flat, _metadata(run, mode, per_channel, keras_thr, None, None))
        tfl_scores = _device_scores(data, val_x, config)
        # Quantization shifts scores, so the device gets thresholds fitted to its own outputs;
        # a threshold leaves the Keras one only for a real F1 gain (RECALIBRATION_SLACK).
        tfl_thr = calibrate_thresholds(val_y, tfl_scores, prior=keras_thr, slack=RECALIBRATION_SLACK)
        report = check_parity(mode.value, run.labels, val_y, keras_scores, tfl_scores, keras_thr, tfl_thr,
                              config.tolerances(mode))
        data = metadata.embed(flat, _metadata(run, mode, per_channel, tfl_thr, report,
                                              len(calib) if mode is QuantMode.INT8 else None))
        reason = "; ".join(report.failures[:3]) + (" ..." if len(report.failures) > 3 else "")
        attempts.append(Attempt(mode.value, report.passed, reason, len(data), per_channel))
        chosen = (mode, per_channel, data, report)
        if report.passed:
            break

    if chosen is None:
        raise ConversionError("no mode could be converted: " + "; ".join(a.reason for a in attempts))
    mode, per_channel, data, report = chosen
    passed = report.passed
    result = ExportResult(
        out=str(config.out) if passed else None,
        mode=mode.value,
        per_channel=per_channel,
        size_bytes=len(data),
        keras_size_bytes=run.keras_size,
        ops=op_names(metadata.strip(data)),
        parity=report,
        attempts=attempts,
        metadata=metadata.read(data) or {},
        report_path=str(config.report_path()),
        seconds=time.perf_counter() - t0,
    )
    try:
        result.save()  # written either way, and first: a failed gate must say where it failed
        if passed:
            atomic.write_bytes(config.out, data)
    except OSError as exc:
        raise ExportError(f"cannot write {exc.filename or config.out}: {exc.strerror or exc}") from None
    if not passed:
        raise ParityError(f"{mode.value} export failed its parity gate: {attempts[-1].reason}", result)
    return result


@dataclass
class Run:
    run_dir: Path
    manifest: dict
    model: object
    labels: list[str]
    input_size: tuple[int, int]
    keras_size: int


# Run directories travel too (a colleague's bucket): nothing in one is read without a bound.
# A manifest is ~5 KB for 3 labels and grows ~500 bytes a label (metrics per label, twice):
# 16 MiB holds tens of thousands of labels. A .keras file is a ZIP: its directory's sizes are
# checked before Keras inflates anything (Python's zipfile never inflates past them).
MAX_MANIFEST_BYTES = 16 << 20
MAX_KERAS_MEMBERS = 64
MAX_KERAS_BYTES = 4 << 30


def _load_run(config: ExportConfig) -> Run:
    run_dir = Path(config.run_dir)
    manifest_path = run_dir / "manifest.json"
    model_path = run_dir / "model.keras"
    if not run_dir.is_dir():
        raise ExportError(f"{run_dir}: run directory not found")
    for p in (manifest_path, model_path):
        if not p.is_file():
            raise ExportError(f"{p}: missing (is {run_dir} a finished edge-train run?)")
    manifest = _read_manifest(manifest_path)
    try:
        labels = manifest["labels"]
        if not isinstance(labels, list) or not all(isinstance(x, str) for x in labels):
            raise TypeError("'labels' is not a list of strings")
        w, h = (int(v) for v in manifest["input_size"])
        if not (0 < w <= 4096 and 0 < h <= 4096):
            raise ValueError(f"input size {w}x{h} is outside 1..4096")
        thresholds = [float(t) for t in manifest["thresholds"]]
    except (ValueError, KeyError, TypeError) as exc:
        raise ExportError(f"{manifest_path}: corrupt manifest ({type(exc).__name__}: {exc})") from None
    _check_keras_archive(model_path)
    try:
        import keras
    except ImportError:
        raise ExportError("edge-export needs TensorFlow: pip install 'edge-multilabel[train]'") from None

    try:
        model = keras.models.load_model(model_path, compile=False, safe_mode=True)
    except Exception as exc:  # Keras raises ValueError, OSError, zipfile errors ... for bad files
        raise ExportError(f"{model_path}: cannot load Keras model ({first_line(exc)[:200]})") from None
    act = getattr(model.layers[-1], "activation", None)
    act_name = getattr(act, "__name__", str(act))
    if act_name != "sigmoid":
        raise ExportError(
            f"{model_path}: the output layer's activation is {act_name!r}, not 'sigmoid': a multi-label "
            "model needs independent per-label probabilities"
        )
    n_out = model.output_shape[-1]
    if n_out != len(labels) or len(thresholds) != len(labels):
        raise ExportError(
            f"{manifest_path}: {len(labels)} labels and {len(thresholds)} thresholds, but the model has {n_out} outputs"
        )
    return Run(run_dir, manifest, model, labels, (w, h), model_path.stat().st_size)


def _read_manifest(path: Path) -> dict:
    try:
        with path.open("rb") as f:
            raw = f.read(MAX_MANIFEST_BYTES + 1)
    except OSError as exc:
        raise ExportError(f"{path}: cannot read ({exc.strerror or exc})") from None
    if len(raw) > MAX_MANIFEST_BYTES:
        raise ExportError(f"{path}: over {MAX_MANIFEST_BYTES >> 20} MiB, not a manifest edge-train wrote")
    try:
        manifest = json.loads(raw.decode("utf-8"))
    except RecursionError:
        raise ExportError(f"{path}: corrupt manifest (nested too deeply)") from None
    except (ValueError, UnicodeDecodeError) as exc:
        raise ExportError(f"{path}: corrupt manifest ({exc})") from None
    if not isinstance(manifest, dict):
        raise ExportError(f"{path}: corrupt manifest (a JSON {type(manifest).__name__}, not an object)")
    return manifest


def _check_keras_archive(path: Path) -> None:
    import zipfile

    try:
        with zipfile.ZipFile(path) as zf:
            infos = zf.infolist()
    except (zipfile.BadZipFile, OSError, ValueError) as exc:
        raise ExportError(f"{path}: cannot load Keras model (not a .keras archive: {exc})") from None
    total = sum(i.file_size for i in infos)
    if len(infos) > MAX_KERAS_MEMBERS or total > MAX_KERAS_BYTES:
        raise ExportError(f"{path}: {len(infos)} members inflating to {total:,} bytes, over the limits "
                          f"({MAX_KERAS_MEMBERS}, {MAX_KERAS_BYTES:,}): not a model edge-train wrote")


def _device_scores(data: bytes, images: np.ndarray, config: ExportConfig) -> np.ndarray:
    """Scores through the runtime's own loading path, exactly as the device gets them."""
    from edge_runtime.classifier import Classifier

    clf = Classifier.from_bytes(data, name="<export>", threads=config.threads, backend=config.backend)
    return np.asarray(clf.scores(images), dtype=np.float64)


def _metadata(run: Run, mode: QuantMode, per_channel: bool | None, thresholds: np.ndarray,
              report: ParityReport | None, n_calibration: int | None) -> dict:
    m = run.manifest
    metrics = m.get("metrics", {}).get("calibrated", {})
    w, h = run.input_size
    return {
        "labels": run.labels,
        "thresholds": [float(t) for t in thresholds],
        "thresholds_source": f"re-calibrated (max F1; moved from the Keras threshold only for an F1 gain "
                             f"over {RECALIBRATION_SLACK}) on the exported model's outputs on held-out images"
        if report else "trainer",
        "input": {"width": w, "height": h, "channels": 3, "dtype": "uint8" if mode is QuantMode.INT8 else "float32"},
        "preprocessing": m.get("preprocessing"),
        "arch": m.get("arch"),
        "quantization": mode.value,
        "per_channel": per_channel,
        "training": {
            "map": metrics.get("map"),
            "macro_f1": metrics.get("macro_f1"),
            "micro_f1": metrics.get("micro_f1"),
            "n_val": metrics.get("n_samples"),
            "epochs": (m.get("training") or {}).get("epochs_run"),
            "source_csv": (m.get("data") or {}).get("source_csv"),
        },
        "parity": report.summary() if report else None,
        "calibration_images": n_calibration,
        "toolkit_version": __version__,
        "versions": m.get("versions"),
        "exported_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
