"""`train(config)`: labelled images in, a calibrated multi-label model run directory out."""
from __future__ import annotations

import importlib.util
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edge_runtime.atomic import to_jsonable, write_json
from edge_common.calibration import calibrate_thresholds
from edge_runtime.metrics import format_report, multilabel_report
from edge_runtime.preprocess import PREPROCESSING

from . import artifacts as art
from . import distribute, streaming  # [scale: issue 12]
from .config import Loss, TrainConfig
from .errors import ConfigError
from .data import PreparedData, prepare_data


@dataclass(frozen=True)
class TrainResult:
    run_dir: Path
    labels: list[str]
    thresholds: list[float]
    metrics: dict  # validation report at the calibrated thresholds
    report_at_05: dict  # validation report at 0.5
    manifest: dict
    history: dict
    seconds: float

    def summary(self) -> str:
        t = self.manifest["training"]
        head = (f"run: {self.run_dir}\narch {self.manifest['arch']}  input {self.manifest['input_size']}  "
                f"epochs {t['epochs_run']} (best {t['best_epoch']})  {self.seconds:.0f}s\n")
        return head + format_report(self.metrics, "validation, calibrated thresholds (optimistic: "
                                    "thresholds were tuned on this same set)")

    def to_dict(self) -> dict:
        return {"run_dir": str(self.run_dir), "labels": self.labels, "thresholds": self.thresholds,
                "metrics": self.metrics, "report_at_0.5": self.report_at_05, "seconds": self.seconds,
                "epochs_run": self.manifest["training"]["epochs_run"],
                "best_epoch": self.manifest["training"]["best_epoch"]}


def train(config: TrainConfig) -> TrainResult:
    """Train, select by validation mAP, calibrate per-label thresholds, write the run dir."""
    t0 = time.perf_counter()
    if importlib.util.find_spec("keras") is None:  # the device-only install has no TensorFlow
        raise ConfigError("edge-train needs TensorFlow: pip install 'edge-multilabel[train]'")
    out = art.check_out_dir(config.out)  # fail before minutes of training, not after
    _quiet_tf()
    data = prepare_data(config)
    log = (lambda msg: print(msg, file=sys.stderr, flush=True)) if config.verbose else (lambda msg: None)
    for w in data.warnings:
        log(f"warning: {w}")
    log(f"labels: {', '.join(data.labels)}; train {len(data.train.x)} / val {len(data.val.x)} images")

    model, history, best_epoch = _fit(config, data)

    scores = streaming.predict(model, data.val.x)  # [scale: issue 12] array or streamed ShardView
    y_val = data.val.y
    thresholds = calibrate_thresholds(y_val, scores)
    report_05 = multilabel_report(y_val, scores, 0.5, data.labels)
    report_cal = multilabel_report(y_val, scores, thresholds, data.labels)
    seconds = time.perf_counter() - t0

    manifest = {
        "schema_version": art.SCHEMA_VERSION,
        "labels": data.labels,
        "thresholds": [float(t) for t in thresholds],
        "input_size": [config.input_size, config.input_size],
        "preprocessing": PREPROCESSING,
        "arch": config.arch.value,
        "data": {
            "train_csv": art.TRAIN_SPLIT,  # relative to the run dir
            "val_csv": art.VAL_SPLIT,
            "source_csv": str(Path(config.data).resolve()),
            "source_val_csv": str(Path(config.val_data).resolve()) if config.val_data else None,
            "n_train": int(len(data.train.x)),
            "n_val": int(len(data.val.x)),
            "skipped": [{"row": s.row, "filename": s.filename, "reason": s.reason} for s in data.skipped],
            "warnings": data.warnings,
        },
        "metrics": {"at_0.5": report_05, "calibrated": report_cal},
        "training": {
            "config": config.to_dict(),
            "epochs_run": len(history.get("loss", [])),
            "best_epoch": best_epoch,
            "seconds": round(seconds, 2),
            "history": history,
            "distribute": distribute.describe(config, model),  # [scale: issue 12]
        },
        "versions": art.versions(),
    }
    # [scale: issue 12] only the chief writes `out`; other workers write a throwaway copy
    with distribute.run_dir_for_this_process(out, config.distribute) as target, art.atomic_dir(target) as tmp:
        _save_uncompiled(model, config, len(data.labels), tmp / art.MODEL_FILE)
        art.write_split_csvs(tmp, data.train.table.paths, data.train.y, data.val.table.paths, y_val, data.labels)
        write_json(tmp / art.MANIFEST_FILE, manifest)
        write_json(tmp / art.METRICS_FILE, {"at_0.5": report_05, "calibrated": report_cal})
        art.plot_curves(tmp / "curves.png", history)
        art.plot_pr_curves(tmp / "pr_curves.png", y_val, scores, data.labels, thresholds)
    manifest = to_jsonable(manifest)
    return TrainResult(out, data.labels, manifest["thresholds"], manifest["metrics"]["calibrated"],
                       manifest["metrics"]["at_0.5"], manifest, manifest["training"]["history"], seconds)


@distribute.in_strategy  # [scale: issue 12] strategy scope; config with global batch and scaled LR
def _fit(config: TrainConfig, data: PreparedData):
    import keras

    from .augment import make_dataset
    from .callbacks import EpochLog
    from .losses import focal_loss, resolve_pos_weights, weighted_bce
    from .models import build_model

    keras.utils.set_random_seed(config.seed)
    pos_weight = resolve_pos_weights(config.pos_weight, data.train.y)
    loss_fn = (focal_loss(pos_weight, config.focal_gamma) if config.loss is Loss.FOCAL
               else weighted_bce(pos_weight))
    model = build_model(config.arch, config.input_size, len(data.labels), weights=config.weights,
                        width=config.width)
    model.compile(optimizer=keras.optimizers.Adam(config.learning_rate), loss=loss_fn,
                  metrics=[keras.metrics.BinaryAccuracy(name="accuracy")])  # reported, never selects
    train_ds = make_dataset(data.train.x, data.train.y, config.batch_size, config.augment,
                            shuffle=True, seed=config.seed)
    callbacks = [
        streaming.validation_callback(data.val.x, data.val.y, loss_fn),  # first: the others read val_map
        keras.callbacks.ReduceLROnPlateau(monitor="val_map", mode="max", factor=0.3,
                                          patience=max(1, config.patience // 2), min_lr=1e-5, verbose=0),
        keras.callbacks.EarlyStopping(monitor="val_map", mode="max", patience=config.patience,
                                      restore_best_weights=True, verbose=0),
    ]
    if config.verbose:
        callbacks.append(EpochLog(config.epochs, steps=-(-len(data.train.x) // config.batch_size)))
    hist = model.fit(train_ds, epochs=config.epochs, callbacks=callbacks, verbose=0, shuffle=False,  # tf.data shuffles
                     steps_per_epoch=streaming.steps_per_epoch(data.train.x, config.batch_size))  # [scale: issue 12]
    history = {k: [float(v) for v in vals] for k, vals in hist.history.items()}
    val_map = history.get("val_map", [])
    best_epoch = int(np.argmax(val_map)) + 1 if val_map else len(history.get("loss", []))
    return model, history, best_epoch


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
