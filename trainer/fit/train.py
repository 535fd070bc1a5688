"""`train(config)`: labelled images in, a calibrated multi-label model run directory out."""

from __future__ import annotations

import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edge_common.calibration import calibrate_thresholds
from edge_common.run import (
    CURVES_FILE,
    METRICS_FILE,
    MODEL_FILE,
    PR_CURVES_FILE,
    TRAIN_SPLIT,
    VAL_SPLIT,
    DataRecord,
    Lineage,
    Metrics,
    RunDir,
    RunManifest,
    Skipped,
    StageRecord,
    TrainingRecord,
    write_manifest,
)
from edge_runtime.atomic import write_json
from edge_runtime.evaluation.metrics import format_report, multilabel_report
from edge_runtime.inference.preprocess import PREPROCESSING

from .. import artifacts as art
from ..config import Loss, Thresholds, TrainConfig
from ..data import streaming
from ..data.prepare import PreparedData, prepare_data
from . import distribute
from .plan import TrainPlan, resolve
from .quality import assess, format_verdict
from .stages import Stage


@dataclass(frozen=True)
class TrainResult:
    run_dir: Path
    labels: list[str]
    thresholds: list[float]
    metrics: (
        dict  # validation report at the thresholds kept (calibrated, or 0.5 for the seed recipe)
    )
    report_at_05: dict  # validation report at 0.5
    manifest: RunManifest  # what manifest.json holds (`manifest.to_json()` is the file's JSON)
    history: dict
    seconds: float

    def summary(self) -> str:
        m, t = self.manifest, self.manifest.training
        head = (
            f"run: {self.run_dir}\narch {m.arch}  input {list(m.input_size)}  start {m.lineage.start}  "
            f"epochs {t.epochs_run} (best {t.best_epoch})  {self.seconds:.0f}s\n"
        )
        cal, half = m.metrics.calibrated, m.metrics.at_05
        if m.thresholds_source == Thresholds.HALF.value:
            table = format_report(self.metrics, "validation, thresholds 0.5")
            beside = f"at calibrated thresholds: macro-F1 {cal['macro_f1']:.3f}  micro-F1 {cal['micro_f1']:.3f}"
        else:
            table = format_report(
                self.metrics,
                "validation, calibrated thresholds (optimistic: "
                "thresholds were tuned on this same set)",
            )
            beside = f"at 0.5: macro-F1 {half['macro_f1']:.3f}  micro-F1 {half['micro_f1']:.3f}"
        return f"{head}{table}\n{beside}\n{format_verdict(m.quality)}"

    def to_dict(self) -> dict:
        m = self.manifest
        return {
            "run_dir": str(self.run_dir),
            "labels": self.labels,
            "thresholds": self.thresholds,
            "thresholds_source": m.thresholds_source,
            "metrics": self.metrics,
            "report_at_0.5": self.report_at_05,
            "report_calibrated": m.metrics.calibrated,
            "seconds": self.seconds,
            "epochs_run": m.training.epochs_run,
            "best_epoch": m.training.best_epoch,
            "quality": m.quality,
            "lineage": m.lineage.to_json(),
        }


def train(config: TrainConfig | TrainPlan) -> TrainResult:
    """Train, select by validation mAP, calibrate per-label thresholds, write the run dir.

    A `TrainConfig` is resolved first (`trainer.resolve`: the init-from run, weights file
    and TF_CONFIG are read and checked before any image is decoded); a `TrainPlan` is used as is.
    """
    t0 = time.perf_counter()
    plan = resolve(config)  # a TrainPlan as it is, after checking TensorFlow is installed
    config = plan.config
    out = art.check_out_dir(config.out)  # fail before minutes of training, not after
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

    model, history, best_epoch, lineage, stages = _fit(config, data, log, plan.parent)

    scores = streaming.predict(model, data.val.x)
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

    draft = RunManifest(
        labels=tuple(data.labels),
        thresholds=tuple(float(t) for t in thresholds),
        thresholds_source=config.thresholds.value,
        input_size=(config.input_size, config.input_size),
        preprocessing=PREPROCESSING,
        arch=config.arch.value,
        data=DataRecord(
            train_csv=TRAIN_SPLIT,  # relative to the run dir
            val_csv=VAL_SPLIT,
            # Names, not this machine's paths: the exporter copies them into the model file.
            source_csv=Path(config.data).name,
            source_val_csv=Path(config.val_data).name if config.val_data else None,
            n_train=int(len(data.train.x)),
            n_val=int(len(data.val.x)),
            skipped=tuple(Skipped(s.row, s.filename, s.reason) for s in data.skipped),
            warnings=tuple(data.warnings),
        ),
        metrics=Metrics(at_05=report_05, calibrated=report_cal),
        calibrated_thresholds=tuple(float(t) for t in calibrated),
        quality=quality,
        lineage=lineage,
        training=TrainingRecord(
            config=_public_config(config),
            stages=tuple(
                StageRecord(s.name, s.epochs, s.learning_rate, s.warmup, s.cached) for s in stages
            ),
            epochs_run=len(history.get("loss", [])),
            best_epoch=best_epoch,
            seconds=round(seconds, 2),
            history=history,
            distribute=distribute.describe(config, model),
        ),
        versions=art.versions(),
    )
    # As a reader will see it (JSON values: NaN as null), and refused here if a reader would.
    manifest = RunManifest.from_json(draft.to_json())
    # only the chief writes `out`; other workers write a throwaway copy
    with (
        distribute.run_dir_for_this_process(out, config.distribute) as target,
        art.atomic_dir(target) as tmp,
    ):
        _save_uncompiled(model, config, len(data.labels), tmp / MODEL_FILE)
        art.write_split_csvs(
            tmp, data.train.table.paths, data.train.y, data.val.table.paths, y_val, data.labels
        )
        write_manifest(tmp, manifest)
        write_json(tmp / METRICS_FILE, manifest.metrics.to_json())
        art.plot_curves(tmp / CURVES_FILE, history)
        art.plot_pr_curves(tmp / PR_CURVES_FILE, y_val, scores, data.labels, thresholds)
    kept = manifest.metrics.at_05 if half else manifest.metrics.calibrated
    if config.verbose and manifest.verdict != "learned":
        log(
            format_verdict(manifest.quality).splitlines()[0]
            + " (the summary and manifest['quality'] say more)"
        )
    return TrainResult(
        out,
        list(manifest.labels),
        list(manifest.thresholds),
        kept,
        manifest.metrics.at_05,
        manifest,
        manifest.training.history,
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
def _fit(
    config: TrainConfig, data: PreparedData, log, parent: RunDir | None
) -> tuple[object, dict, int, Lineage, list[Stage]]:
    """(model, history, best epoch, lineage, stages): the model trained from its starting point."""
    import keras

    from ..model.losses import focal_loss, resolve_pos_weights, weighted_bce
    from ..model.transfer import start_model
    from .stages import fit_stages, plan_stages

    keras.utils.set_random_seed(config.seed)
    pos_weight = resolve_pos_weights(config.pos_weight, data.train.y)
    loss_fn = (
        focal_loss(pos_weight, config.focal_gamma)
        if config.loss is Loss.FOCAL
        else weighted_bce(pos_weight)
    )
    model, lineage = start_model(config, data.labels, parent)
    train_ds = streaming.make_stream(
        data.train.x, data.train.y, config.batch_size, config.augment, seed=config.seed
    )
    stages = plan_stages(config)
    steps = streaming.steps_per_epoch(data.train.x, config.batch_size)  # the stream is endless
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
        train_xy=(data.train.x, data.train.y),  # for stage 1 on cached features
    )
    return model, history, best_epoch, lineage, stages


def _save_uncompiled(model, config: TrainConfig, n_labels: int, path: Path) -> None:
    """Save the weights in a freshly built, never-compiled twin: loading needs no custom loss.

    (`clone_model` would carry the compile config, and with it the closure loss, along.)
    """
    from ..model.models import build_model

    clean = build_model(config.arch, config.input_size, n_labels, weights=None, width=config.width)
    clean.set_weights(model.get_weights())
    clean.save(path)


def _quiet_tf() -> None:
    # TF's C++ INFO/WARNING lines would drown the one-line-per-epoch progress on stderr.
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
