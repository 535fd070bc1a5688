"""The run directory `edge-train` writes: its file names, the one reader and the one writer.

Run directories travel (a colleague's bucket, a CI artifact), so nothing in one is read without
a bound: the manifest is read up to MAX_MANIFEST_BYTES and parsed into typed records
(`RunManifest`), and the Keras file, a ZIP archive, has its directory checked (member count,
inflated size, the members a saved model holds) before Keras inflates anything; Python's
zipfile never inflates past the sizes its directory declares. `open_run` does all of it in
well under a second, so a malformed run fails before any image is decoded. TensorFlow-free:
loading the model itself is the caller's (with `safe_mode=True`).
"""

from __future__ import annotations

import json
import zipfile
from dataclasses import dataclass
from pathlib import Path

from edge_runtime import atomic
from edge_runtime.errors import EdgeError

from .fields import ManifestError
from .manifest import RunManifest

MODEL_FILE = "model.keras"
MANIFEST_FILE = "manifest.json"
METRICS_FILE = "metrics.json"
TRAIN_SPLIT = "train_split.csv"
VAL_SPLIT = "val_split.csv"
CURVES_FILE = "curves.png"
PR_CURVES_FILE = "pr_curves.png"

# A manifest is ~5 KB for 3 labels and grows ~500 bytes a label (metrics per label, twice):
# 16 MiB holds tens of thousands of labels.
MAX_MANIFEST_BYTES = 16 << 20
MAX_KERAS_MEMBERS = 64
MAX_KERAS_BYTES = 4 << 30
KERAS_MEMBERS = ("config.json", "model.weights.h5")  # what every saved Keras 3 model holds


class RunDirError(EdgeError):
    """A run directory is missing, incomplete or corrupt (the message is one line)."""


@dataclass(frozen=True)
class RunDir:
    """A finished run whose manifest parsed and whose model file is a plausible Keras archive."""

    path: Path
    manifest: RunManifest

    @property
    def model_path(self) -> Path:
        return self.path / MODEL_FILE

    # The split CSVs are named relative to the run (an absolute name is taken as it is). They
    # may be gone: only an int8 export (calibration) and the parity gate read them.
    @property
    def train_split(self) -> Path:
        return self.path / self.manifest.data.train_csv

    @property
    def val_split(self) -> Path:
        return self.path / self.manifest.data.val_csv


def open_run(path: str | Path) -> RunDir:
    """The run at `path`, checked: `RunDirError` (one line) for anything an exporter or an
    `--init-from` would otherwise trip over later."""
    run = Path(path)
    if not run.is_dir():
        raise RunDirError(f"{run}: run directory not found")
    missing = [n for n in (MANIFEST_FILE, MODEL_FILE) if not (run / n).is_file()]
    if missing:
        raise RunDirError(
            f"{run}: not a run directory (no {' and no '.join(missing)}; is it a finished "
            "edge-train run?)"
        )
    manifest = read_manifest(run / MANIFEST_FILE)
    check_keras_archive(run / MODEL_FILE)
    return RunDir(run, manifest)


def read_manifest(path: str | Path) -> RunManifest:
    """A manifest file, bounded and parsed into typed records; `RunDirError` if it is not one."""
    path = Path(path)
    try:
        with path.open("rb") as f:
            raw = f.read(MAX_MANIFEST_BYTES + 1)
    except OSError as exc:
        raise RunDirError(f"{path}: cannot read ({exc.strerror or exc})") from None
    if len(raw) > MAX_MANIFEST_BYTES:
        raise RunDirError(
            f"{path}: over {MAX_MANIFEST_BYTES >> 20} MiB, not a manifest edge-train wrote"
        )
    try:
        return RunManifest.from_json(json.loads(raw.decode("utf-8")))
    except RecursionError:
        raise RunDirError(f"{path}: corrupt manifest (nested too deeply)") from None
    except ManifestError as exc:
        raise RunDirError(f"{path}: corrupt manifest ({exc})") from None
    except (ValueError, UnicodeDecodeError) as exc:
        raise RunDirError(f"{path}: corrupt manifest (not JSON: {exc})") from None


def write_manifest(run_dir: str | Path, manifest: RunManifest) -> Path:
    """Write `run_dir/manifest.json` atomically (complete or not at all)."""
    return atomic.write_json(Path(run_dir) / MANIFEST_FILE, manifest.to_json())


def check_keras_archive(path: str | Path) -> None:
    """`RunDirError` unless `path` is a ZIP within the limits holding a saved model's members."""
    path = Path(path)
    try:
        with zipfile.ZipFile(path) as zf:
            infos = zf.infolist()
    except (zipfile.BadZipFile, OSError, ValueError) as exc:
        raise RunDirError(
            f"{path}: cannot load Keras model (not a .keras archive: {exc})"
        ) from None
    total = sum(i.file_size for i in infos)
    if len(infos) > MAX_KERAS_MEMBERS or total > MAX_KERAS_BYTES:
        raise RunDirError(
            f"{path}: {len(infos)} members inflating to {total:,} bytes, over the limits "
            f"({MAX_KERAS_MEMBERS}, {MAX_KERAS_BYTES:,}): not a model edge-train wrote"
        )
    names = {i.filename for i in infos}
    absent = [m for m in KERAS_MEMBERS if m not in names]
    if absent:
        raise RunDirError(
            f"{path}: cannot load Keras model (the archive has no {', '.join(absent)})"
        )
