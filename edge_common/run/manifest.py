"""The run manifest as typed records: what `edge-train` writes and every reader of a run reads.

`RunManifest.to_json()` is the JSON on disk (schema_version 1, the same keys and values the
trainer always wrote); `RunManifest.from_json()` is the one parser, checking every field's type
and the invariants readers rely on (one threshold per label, a sane input size), so a reader
never meets a KeyError or TypeError far from the file. Unknown keys are ignored (a newer writer
may add some within one schema version); a different `schema_version` is refused.

What the trainer's own parts produce as JSON-ready dicts (the validation reports, the quality
verdict, the per-epoch history, the distribution summary, the config) stays a mapping here: the
manifest carries them, the modules that made them own their shape.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from edge_runtime.atomic import to_jsonable

from .fields import Fields, ManifestError

SCHEMA_VERSION = 1
MAX_INPUT_SIDE = 4096
Json = Mapping[str, Any]  # a JSON object whose shape another module owns


@dataclass(frozen=True)
class Skipped:
    """A CSV row left out of training (unreadable image, unknown label...)."""

    row: int
    filename: str
    reason: str

    @classmethod
    def from_json(cls, f: Fields) -> Skipped:
        return cls(f.integer("row"), f.text("filename"), f.text("reason"))

    def to_json(self) -> dict:
        return {"row": self.row, "filename": self.filename, "reason": self.reason}


@dataclass(frozen=True)
class DataRecord:
    """Where the run's images came from and how they were split."""

    train_csv: str  # the training split, relative to the run directory (absolute paths inside)
    val_csv: str  # the validation split, likewise
    source_csv: str  # the user's CSV, by file name only: it travels into the exported model
    source_val_csv: str | None
    n_train: int
    n_val: int
    skipped: tuple[Skipped, ...] = ()
    warnings: tuple[str, ...] = ()

    @classmethod
    def from_json(cls, f: Fields) -> DataRecord:
        return cls(
            train_csv=f.text("train_csv"),
            val_csv=f.text("val_csv"),
            source_csv=f.text("source_csv"),
            source_val_csv=f.text("source_val_csv", optional=True),
            n_train=f.integer("n_train", lo=0),
            n_val=f.integer("n_val", lo=0),
            skipped=tuple(Skipped.from_json(s) for s in f.objects("skipped")),
            warnings=f.texts("warnings"),
        )

    def to_json(self) -> dict:
        return {
            "train_csv": self.train_csv,
            "val_csv": self.val_csv,
            "source_csv": self.source_csv,
            "source_val_csv": self.source_val_csv,
            "n_train": self.n_train,
            "n_val": self.n_val,
            "skipped": [s.to_json() for s in self.skipped],
            "warnings": list(self.warnings),
        }


@dataclass(frozen=True)
class Metrics:
    """Validation reports (edge_runtime.evaluation.metrics.multilabel_report) at both thresholds."""

    at_05: Json  # at 0.5 for every label
    calibrated: Json  # at the calibrated per-label thresholds

    @classmethod
    def from_json(cls, f: Fields) -> Metrics:
        return cls(f.mapping("at_0.5"), f.mapping("calibrated"))

    def to_json(self) -> dict:
        return {"at_0.5": self.at_05, "calibrated": self.calibrated}


@dataclass(frozen=True)
class StageRecord:
    """One fitting stage as it was planned (trainer.fit.stages.Stage)."""

    name: str
    epochs: int
    learning_rate: float
    warmup: bool
    cached_features: bool = False  # a head stage on pooled features computed once

    @classmethod
    def from_json(cls, f: Fields) -> StageRecord:
        return cls(
            f.text("name"),
            f.integer("epochs"),
            f.number("learning_rate"),
            f.flag("warmup"),
            f.flag("cached_features", default=False),  # absent in runs before it existed
        )

    def to_json(self) -> dict:
        return {
            "name": self.name,
            "epochs": self.epochs,
            "learning_rate": self.learning_rate,
            "warmup": self.warmup,
            "cached_features": self.cached_features,
        }


@dataclass(frozen=True)
class TrainingRecord:
    """How the model was trained."""

    config: Json  # the resolved training config, paths cut to their names
    stages: tuple[StageRecord, ...]
    epochs_run: int
    best_epoch: int
    seconds: float
    history: Json  # per-epoch lists (loss, val_loss, val_map, learning_rate, stage)
    distribute: Json  # strategy, replicas, workers, the effective batch size and rate

    @classmethod
    def from_json(cls, f: Fields) -> TrainingRecord:
        config = f.obj("config")
        if "width" in config.d:
            config.number("width")  # the one config value a reader uses (`RunManifest.width`)
        return cls(
            config=config.d,
            stages=tuple(StageRecord.from_json(s) for s in f.objects("stages")),
            epochs_run=f.integer("epochs_run", lo=0),
            best_epoch=f.integer("best_epoch", lo=0),
            seconds=f.number("seconds"),
            history=f.mapping("history"),
            distribute=f.mapping("distribute"),
        )

    def to_json(self) -> dict:
        return {
            "config": self.config,
            "stages": [s.to_json() for s in self.stages],
            "epochs_run": self.epochs_run,
            "best_epoch": self.best_epoch,
            "seconds": self.seconds,
            "history": self.history,
            "distribute": self.distribute,
        }


@dataclass(frozen=True)
class InitFrom:
    """The previous run an `--init-from` run started from, and what happened to its labels."""

    run: str  # its folder name, not a path of the training machine
    model_sha256: str
    arch: str
    labels_kept: tuple[str, ...]
    labels_new: tuple[str, ...]
    labels_dropped: tuple[str, ...]
    parent: Lineage  # where that run itself started

    @classmethod
    def from_json(cls, f: Fields) -> InitFrom:
        return cls(
            run=f.text("run"),
            model_sha256=f.text("model_sha256"),
            arch=f.text("arch"),
            labels_kept=f.texts("labels_kept"),
            labels_new=f.texts("labels_new"),
            labels_dropped=f.texts("labels_dropped"),
            parent=Lineage.from_json(f.obj("parent")),
        )

    def to_json(self) -> dict:
        return {
            "run": self.run,
            "model_sha256": self.model_sha256,
            "arch": self.arch,
            "labels_kept": list(self.labels_kept),
            "labels_new": list(self.labels_new),
            "labels_dropped": list(self.labels_dropped),
            "parent": self.parent.to_json(),
        }


@dataclass(frozen=True)
class Lineage:
    """Where training started: from scratch, a pretrained backbone, or a previous run."""

    start: str  # "scratch", "pretrained" or "init_from"
    weights: Json | None = None  # pretrained: the backbone's source (and file name, sha256)
    init_from: InitFrom | None = None  # init_from: the previous run

    @classmethod
    def from_json(cls, f: Fields) -> Lineage:
        init = f.obj("init_from", optional=True)
        return cls(
            start=f.text("start"),
            weights=f.mapping("weights", optional=True),
            init_from=InitFrom.from_json(init) if init is not None else None,
        )

    def to_json(self) -> dict:
        out: dict = {"start": self.start}
        if self.weights is not None:
            out["weights"] = self.weights
        if self.init_from is not None:
            out["init_from"] = self.init_from.to_json()
        return out


@dataclass(frozen=True)
class RunManifest:
    """A finished training run: the contract between `edge-train` and every reader of its run."""

    labels: tuple[str, ...]
    thresholds: tuple[float, ...]  # the ones the run keeps, one per label
    thresholds_source: str  # "calibrated" or "0.5"
    input_size: tuple[int, int]  # (width, height)
    preprocessing: Json  # edge_runtime.inference.preprocess.PREPROCESSING
    arch: str
    data: DataRecord
    metrics: Metrics
    calibrated_thresholds: tuple[float, ...]
    quality: Json  # trainer.fit.quality.assess: {"verdict": ..., ...}
    lineage: Lineage
    training: TrainingRecord
    versions: Json  # package versions of the training machine
    schema_version: int = SCHEMA_VERSION

    def __post_init__(self) -> None:
        # The invariants every reader relies on, checked for the writer as for the reader.
        if self.schema_version != SCHEMA_VERSION:
            raise ManifestError(
                f"schema_version {self.schema_version} is not {SCHEMA_VERSION}, the one this "
                "toolkit reads (a run from another edge-train version?)"
            )
        if not self.labels:
            raise ManifestError("no labels: a model needs at least one")
        if len(set(self.labels)) != len(self.labels):
            raise ManifestError("'labels' holds a name twice")
        for name, values in (
            ("thresholds", self.thresholds),
            ("calibrated_thresholds", self.calibrated_thresholds),
        ):
            if len(values) != len(self.labels):
                raise ManifestError(
                    f"{len(self.labels)} labels but {len(values)} {name}: the model outputs one "
                    "score per label, and each needs its threshold"
                )
        w, h = self.input_size
        if not (0 < w <= MAX_INPUT_SIDE and 0 < h <= MAX_INPUT_SIDE):
            raise ManifestError(f"input size {w}x{h} is outside 1..{MAX_INPUT_SIDE}")
        if not isinstance(self.quality.get("verdict"), str):
            raise ManifestError("'quality.verdict' must be a string")

    @property
    def width(self) -> float:
        """The model's width multiplier (channel multiplier or alpha; 1.0 if not recorded)."""
        return float(self.training.config.get("width", 1.0))

    @property
    def verdict(self) -> str:
        """The trainer's verdict against chance: "learned", "weak" or "not_learned"."""
        return self.quality["verdict"]

    @classmethod
    def from_json(cls, value: object) -> RunManifest:
        """Parse and check a manifest; `ManifestError` names the first field that is wrong."""
        f = Fields(value)
        version = f.integer("schema_version")
        if version != SCHEMA_VERSION:  # before the fields: another version may name them otherwise
            raise ManifestError(
                f"schema_version {version} is not {SCHEMA_VERSION}, the one this toolkit reads "
                "(a run from another edge-train version?)"
            )
        size = f.array("input_size")
        if len(size) != 2 or not all(isinstance(v, int) and not isinstance(v, bool) for v in size):
            raise ManifestError("'input_size' must be [width, height] in pixels")
        return cls(
            labels=f.texts("labels"),
            thresholds=f.numbers("thresholds", 0.0, 1.0),
            thresholds_source=f.text("thresholds_source"),
            input_size=(size[0], size[1]),
            preprocessing=f.mapping("preprocessing"),
            arch=f.text("arch"),
            data=DataRecord.from_json(f.obj("data")),
            metrics=Metrics.from_json(f.obj("metrics")),
            calibrated_thresholds=f.numbers("calibrated_thresholds", 0.0, 1.0),
            quality=f.mapping("quality"),
            lineage=Lineage.from_json(f.obj("lineage")),
            training=TrainingRecord.from_json(f.obj("training")),
            versions=f.mapping("versions"),
            schema_version=version,
        )

    def to_json(self) -> dict:
        """The manifest as JSON-ready values, in the order the file has always had."""
        return to_jsonable(
            {
                "schema_version": self.schema_version,
                "labels": list(self.labels),
                "thresholds": list(self.thresholds),
                "thresholds_source": self.thresholds_source,
                "input_size": list(self.input_size),
                "preprocessing": self.preprocessing,
                "arch": self.arch,
                "data": self.data.to_json(),
                "metrics": self.metrics.to_json(),
                "calibrated_thresholds": list(self.calibrated_thresholds),
                "quality": self.quality,
                "lineage": self.lineage.to_json(),
                "training": self.training.to_json(),
                "versions": self.versions,
            }
        )


__all__ = [
    "DataRecord",
    "InitFrom",
    "Lineage",
    "ManifestError",
    "Metrics",
    "RunManifest",
    "SCHEMA_VERSION",
    "Skipped",
    "StageRecord",
    "TrainingRecord",
]
