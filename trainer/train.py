"""`train(config)`: labelled images in, a calibrated multi-label model run directory out."""

from __future__ import annotations

import importlib.util
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edge_common.calibration import calibrate_thresholds
from edge_runtime.atomic import to_jsonable, write_json
from edge_runtime.evaluation.metrics import format_report, multilabel_report
from edge_runtime.inference.preprocess import PREPROCESSING

from . import artifacts as art
from . import distribute, streaming
from .config import Loss, Thresholds, TrainConfig
from .data import PreparedData, prepare_data
from .errors import ConfigError
from .quality import assess, format_verdict
from .transfer import check_start


@dataclass(frozen=True)
class TrainResult:
    run_dir: Path
    labels: list[str]
    thresholds: list[float]
    metrics: (
        dict  # validation report at the thresholds kept (calibrated, or 0.5 for the seed recipe)
    )
    report_at_05: dict  # validation report at 0.5
    manifest: dict
    history: dict
    seconds: float

    def summary(self) -> str:
        m, t = self.manifest, self.manifest["training"]
        head = (
            f"run: {self.run_dir}\narch {m['arch']}  input {m['input_size']}  start {m['lineage']['start']}  "
            f"epochs {t['epochs_run']} (best {t['best_epoch']})  {self.seconds:.0f}s\n"
        )
        cal, half = m["metrics"]["calibrated"], m["metrics"]["at_0.5"]
        if m["thresholds_source"] == Thresholds.HALF.value:
            table = format_report(self.metrics, "validation, thresholds 0.5")
            beside = f"at calibrated thresholds: macro-F1 {cal['macro_f1']:.3f}  micro-F1 {cal['micro_f1']:.3f}"
        else:
            table = format_report(
                self.metrics,
                "validation, calibrated thresholds (optimistic: "
                "thresholds were tuned on this same set)",
            )
            beside = f"at 0.5: macro-F1 {half['macro_f1']:.3f}  micro-F1 {half['micro_f1']:.3f}"
        return f"{head}{table}\n{beside}\n{format_verdict(m['quality'])}"

    def to_dict(self) -> dict:
        return {
            "run_dir": str(self.run_dir),
            "labels": self.labels,
            "thresholds": self.thresholds,
            "thresholds_source": self.manifest["thresholds_source"],
            "metrics": self.metrics,
            "report_at_0.5": self.report_at_05,
            "report_calibrated": self.manifest["metrics"]["calibrated"],
            "seconds": self.seconds,
            "epochs_run": self.manifest["training"]["epochs_run"],
            "best_epoch": self.manifest["training"]["best_epoch"],
            "quality": self.manifest["quality"],
            "lineage": self.manifest["lineage"],
        }


def train(config: TrainConfig) -> TrainResult:
    """Train, select by validation mAP, calibrate per-label thresholds, write the run dir."""
    t0 = time.perf_counter()
    if importlib.util.find_spec("keras") is None:  # the device-only install has no TensorFlow
        raise ConfigError("edge-train needs TensorFlow: pip install 'edge-multilabel[train]'")
    out = art.check_out_dir(config.out)  # fail before minutes of training, not after
    check_start(config)  # the same for a missing weights package
    _quiet_tf()
    data = prepare_data(config)
    log = (
        (lambda msg: print(msg, file=sys.stderr, flush=True))
        if config.verbose
        else (lambda msg: None)
    )
    for w in data.warnings:
        log(f"warning: {w}")
    log(
        f"labels: {', '.join(data.labels)}; train {len(data.train.x)} / val {len(data.val.x)} images"
    )

    model, history, best_epoch, fit_info = _fit(config, data, log)

    scores = streaming.predict(model, data.val.x)  # array or streamed ShardView
    y_val = data.val.y
    calibrated = calibrate_thresholds(y_val, scores)
    report_05 = multilabel_report(y_val, scores, 0.5, data.labels)
    report_cal = multilabel_report(y_val, scores, calibrated, data.labels)
    half = config.thresholds is Thresholds.HALF
    thresholds = np.full(len(data.labels), 0.5) if half else calibrated
    quality = assess(
        y_val, scores, data.labels, n_train_pos=data.train.y.sum(axis=0), seed=config.seed
    )
    seconds = time.perf_counter() - t0

    manifest = {
        "schema_version": art.SCHEMA_VERSION,
        "labels": data.labels,
        "thresholds": [float(t) for t in thresholds],
        "thresholds_source": config.thresholds.value,
        "input_size": [config.input_size, config.input_size],
        "preprocessing": PREPROCESSING,
        "arch": config.arch.value,
        "data": {
            "train_csv": art.TRAIN_SPLIT,  # relative to the run dir
            "val_csv": art.VAL_SPLIT,
            # Names, not this machine's paths: the exporter copies them into the model file.
            "source_csv": Path(config.data).name,
            "source_val_csv": Path(config.val_data).name if config.val_data else None,
            "n_train": int(len(data.train.x)),
            "n_val": int(len(data.val.x)),
            "skipped": [
                {"row": s.row, "filename": s.filename, "reason": s.reason} for s in data.skipped
            ],
            "warnings": data.warnings,
        },
        "metrics": {"at_0.5": report_05, "calibrated": report_cal},
        "calibrated_thresholds": [float(t) for t in calibrated],
        "quality": quality,
        "lineage": fit_info["lineage"],
        "training": {
            "config": _public_config(config),
            "stages": fit_info["stages"],
            "epochs_run": len(history.get("loss", [])),
            "best_epoch": best_epoch,
            "seconds": round(seconds, 2),
            "history": history,
            "distribute": distribute.describe(config, model),
        },
        "versions": art.versions(),
    }
    # only the chief writes `out`; other workers write a throwaway copy
    with (
        distribute.run_dir_for_this_process(out, config.distribute) as target,
        art.atomic_dir(target) as tmp,
    ):
        _save_uncompiled(model, config, len(data.labels), tmp / art.MODEL_FILE)
        art.write_split_csvs(
            tmp, data.train.table.paths, data.train.y, data.val.table.paths, y_val, data.labels
        )
        write_json(tmp / art.MANIFEST_FILE, manifest)
        write_json(tmp / art.METRICS_FILE, {"at_0.5": report_05, "calibrated": report_cal})
        art.plot_curves(tmp / "curves.png", history)
        art.plot_pr_curves(tmp / "pr_curves.png", y_val, scores, data.labels, thresholds)
    manifest = to_jsonable(manifest)
    kept = manifest["metrics"]["at_0.5" if half else "calibrated"]
    if config.verbose and quality["verdict"] != "learned":
        log(
            format_verdict(quality).splitlines()[0]
            + " (the summary and manifest['quality'] say more)"
        )
    return TrainResult(
        out,
        data.labels,
        manifest["thresholds"],
        kept,
        manifest["metrics"]["at_0.5"],
        manifest,
        manifest["training"]["history"],
        seconds,
    )


def _public_config(config: TrainConfig) -> dict:
    """The config for the manifest, paths cut to their names (nothing of this machine ships)."""
    d = config.to_dict()
    for key in ("data", "out", "val_data", "init_from", "cache_dir"):
        if d.get(key):
            d[key] = Path(d[key]).name
    if d.get("weights") not in (None, "imagenet"):
        d["weights"] = Path(d["weights"]).name
    return d


@distribute.in_strategy  # strategy scope; config with global batch and scaled LR
def _fit(config: TrainConfig, data: PreparedData, log):
    import keras

    from .augment import make_dataset
    from .losses import focal_loss, resolve_pos_weights, weighted_bce
    from .stages import fit_stages, plan_stages
    from .transfer import start_model

    keras.utils.set_random_seed(config.seed)
    pos_weight = resolve_pos_weights(config.pos_weight, data.train.y)
    loss_fn = (
        focal_loss(pos_weight, config.focal_gamma)
        if config.loss is Loss.FOCAL
        else weighted_bce(pos_weight)
    )
    model, lineage = start_model(config, data.labels)
    train_ds = make_dataset(
        data.train.x,
        data.train.y,
        config.batch_size,
        config.augment,
        shuffle=True,
        seed=config.seed,
    )
    stages = plan_stages(config)
    steps = -(-len(data.train.x) // config.batch_size)
    # a streamed input is endless: fit counts its steps
    fit_steps = streaming.steps_per_epoch(data.train.x, config.batch_size)
    history, best_epoch = fit_stages(
        model,
        config,
        stages,
        train_ds,
        data.val.x,
        data.val.y,
        loss_fn,
        steps,
        log,
        fit_steps=fit_steps,
        train_xy=(data.train.x, data.train.y),  # for stage 1 on cached features
    )
    info = {
        "lineage": lineage,
        "stages": [
            {
                "name": s.name,
                "epochs": s.epochs,
                "learning_rate": s.learning_rate,
                "warmup": s.warmup,
                "cached_features": s.cached,
            }
            for s in stages
        ],
    }
    return model, history, best_epoch, info


def _save_uncompiled(model, config: TrainConfig, n_labels: int, path: Path) -> None:
    """Save the weights in a freshly built, never-compiled twin: loading needs no custom loss.

    (`clone_model` would carry the compile config, and with it the closure loss, along.)
    """
    from .models import build_model

    clean = build_model(config.arch, config.input_size, n_labels, weights=None, width=config.width)
    clean.set_weights(model.get_weights())
    clean.save(path)


def _quiet_tf() -> None:
    # TF's C++ INFO/WARNING lines would drown the one-line-per-epoch progress on stderr.
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
