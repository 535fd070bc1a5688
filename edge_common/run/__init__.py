"""The run directory: one owner of its file names, its manifest's records, its reader and writer.

from edge_common.run import open_run
run = open_run("runs/shapes")          # RunDirError (one line) if anything is off
run.manifest.labels, run.manifest.input_size, run.model_path
"""

from .directory import (
    CURVES_FILE,
    KERAS_MEMBERS,
    MANIFEST_FILE,
    MAX_KERAS_BYTES,
    MAX_KERAS_MEMBERS,
    MAX_MANIFEST_BYTES,
    METRICS_FILE,
    MODEL_FILE,
    PR_CURVES_FILE,
    TRAIN_SPLIT,
    VAL_SPLIT,
    RunDir,
    RunDirError,
    check_keras_archive,
    open_run,
    read_manifest,
    write_manifest,
)
from .fields import ManifestError
from .manifest import (
    MAX_INPUT_SIDE,
    SCHEMA_VERSION,
    DataRecord,
    InitFrom,
    Lineage,
    Metrics,
    RunManifest,
    Skipped,
    StageRecord,
    TrainingRecord,
)

__all__ = [
    "CURVES_FILE",
    "DataRecord",
    "InitFrom",
    "KERAS_MEMBERS",
    "Lineage",
    "MANIFEST_FILE",
    "MAX_INPUT_SIDE",
    "MAX_KERAS_BYTES",
    "MAX_KERAS_MEMBERS",
    "MAX_MANIFEST_BYTES",
    "METRICS_FILE",
    "MODEL_FILE",
    "ManifestError",
    "Metrics",
    "PR_CURVES_FILE",
    "RunDir",
    "RunDirError",
    "RunManifest",
    "SCHEMA_VERSION",
    "Skipped",
    "StageRecord",
    "TRAIN_SPLIT",
    "TrainingRecord",
    "VAL_SPLIT",
    "check_keras_archive",
    "open_run",
    "read_manifest",
    "write_manifest",
]
