"""The run directory's one reader (edge_common.run): typed, bounded, checked before any work.

Every malformed run fails in one line through the Python API (`open_run`, `resolve`) and both
CLIs that read runs (`edge-train --init-from`, `edge-export`), before any image is decoded: the
data CSV named here does not even exist, so an error about the run proves it came first. No
training: the runs are written by hand, the model file a ZIP with a saved model's member names.
"""

from __future__ import annotations

import copy
import io
import json
import zipfile
from pathlib import Path

import pytest

from edge_common.run import (
    MANIFEST_FILE,
    MAX_MANIFEST_BYTES,
    MODEL_FILE,
    RunDirError,
    RunManifest,
    open_run,
    read_manifest,
    write_manifest,
)

runtime = pytest.mark.runtime  # TensorFlow-free: the reader works in the device-only installs

REPORT = {"map": 0.9, "macro_f1": 0.8, "micro_f1": 0.85, "n_samples": 20, "per_label": {}}
MANIFEST = {
    "schema_version": 1,
    "labels": ["cat", "dog"],
    "thresholds": [0.4, 0.6],
    "thresholds_source": "calibrated",
    "input_size": [32, 32],
    "preprocessing": {"resize": "bilinear"},
    "arch": "compact",
    "data": {
        "train_csv": "train_split.csv",
        "val_csv": "val_split.csv",
        "source_csv": "labels.csv",
        "source_val_csv": None,
        "n_train": 80,
        "n_val": 20,
        "skipped": [{"row": 3, "filename": "x.png", "reason": "not an image"}],
        "warnings": [],
    },
    "metrics": {"at_0.5": REPORT, "calibrated": REPORT},
    "calibrated_thresholds": [0.4, 0.6],
    "quality": {"verdict": "learned", "map": 0.9},
    "lineage": {
        "start": "init_from",
        "init_from": {
            "run": "parent",
            "model_sha256": "0" * 64,
            "arch": "compact",
            "labels_kept": ["cat"],
            "labels_new": ["dog"],
            "labels_dropped": [],
            "parent": {"start": "scratch"},
        },
    },
    "training": {
        "config": {"arch": "compact", "width": 0.5, "input_size": 32},
        "stages": [
            {
                "name": "train",
                "epochs": 2,
                "learning_rate": 0.001,
                "warmup": True,
                "cached_features": False,
            }
        ],
        "epochs_run": 2,
        "best_epoch": 2,
        "seconds": 1.5,
        "history": {"loss": [0.7, 0.5], "stage": ["train", "train"]},
        "distribute": {"mode": "none", "replicas": 1},
    },
    "versions": {"toolkit": "0.1.0"},
}


def keras_zip(members=("metadata.json", "config.json", "model.weights.h5")) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for name in members:
            zf.writestr(name, b"{}")
    return buf.getvalue()


def make_run(path: Path, manifest: object = MANIFEST, model: bytes | None = None) -> Path:
    """A run directory by hand: `manifest` as JSON (or raw bytes), `model` (default: a ZIP)."""
    path.mkdir(parents=True)
    if manifest is not None:
        raw = manifest if isinstance(manifest, bytes) else json.dumps(manifest).encode()
        (path / MANIFEST_FILE).write_bytes(raw)
    (path / MODEL_FILE).write_bytes(keras_zip() if model is None else model)
    return path


def changed(path: str, value: object) -> dict:
    """MANIFEST with the field at dotted `path` set to `value` (or removed for ...)."""
    m = copy.deepcopy(MANIFEST)
    *parents, last = path.split(".")
    node = m
    for key in parents:
        node = node[key]
    if value is ...:
        del node[last]
    else:
        node[last] = value
    return m


@runtime
def test_a_good_run_reads_as_typed_records_and_writes_back_the_same_json(tmp_path):
    run = open_run(make_run(tmp_path / "run"))
    m = run.manifest
    assert m.labels == ("cat", "dog") and m.thresholds == (0.4, 0.6)
    assert m.input_size == (32, 32) and m.arch == "compact" and m.width == 0.5
    assert m.data.skipped[0].reason == "not an image" and m.training.stages[0].warmup is True
    assert m.lineage.init_from.parent.start == "scratch" and m.verdict == "learned"
    assert run.model_path == tmp_path / "run" / MODEL_FILE
    assert run.val_split == tmp_path / "run" / "val_split.csv"
    assert m.to_json() == MANIFEST  # nothing lost or added: readers of the JSON see no change
    write_manifest(tmp_path / "copy", m)
    assert json.loads((tmp_path / "copy" / MANIFEST_FILE).read_text()) == MANIFEST
    # Keys a newer writer may add within one schema version are ignored, not refused.
    assert read_manifest(make_run(tmp_path / "more", dict(MANIFEST, extra=1)) / MANIFEST_FILE) == m
    # A field added later within the schema version reads as its default where it is absent.
    stages = [
        {k: v for k, v in s.items() if k != "cached_features"}
        for s in MANIFEST["training"]["stages"]
    ]
    older = make_run(tmp_path / "older", changed("training.stages", stages))
    assert read_manifest(older / MANIFEST_FILE) == m


@runtime
def test_the_writer_refuses_what_the_reader_would():
    m = RunManifest.from_json(MANIFEST)
    with pytest.raises(ValueError, match="2 labels but 1 thresholds"):
        RunManifest(**{**m.__dict__, "thresholds": (0.5,)})


BAD_MANIFESTS = [
    ("oversized", json.dumps(dict(MANIFEST, pad=" " * MAX_MANIFEST_BYTES)).encode(), "over 16 MiB"),
    ("not-json", b"{labels: cat", "not JSON"),
    ("not-utf8", b"\xff\xfe{}", "not JSON"),
    ("deep", b"[" * 100_000 + b"]" * 100_000, "nested too deeply"),
    ("array", b"[1, 2]", "is a JSON array, not an object"),
    ("no-version", changed("schema_version", ...), "no 'schema_version'"),
    ("version-2", changed("schema_version", 2), "schema_version 2 is not 1"),
    ("no-labels", changed("labels", ...), "no 'labels'"),
    ("labels-string", changed("labels", "cat dog"), "'labels' must be a list"),
    ("labels-empty", changed("labels", []), "no labels"),
    ("labels-twice", changed("labels", ["cat", "cat"]), "holds a name twice"),
    ("threshold-count", changed("thresholds", [0.5]), "2 labels but 1 thresholds"),
    ("threshold-range", changed("thresholds", [0.5, 7]), "numbers in [0.0, 1.0]"),
    ("input-size", changed("input_size", [60000, 60000]), "input size 60000x60000"),
    ("input-size-type", changed("input_size", "32x32"), "'input_size' must be a list"),
    ("arch-type", changed("arch", 3), "'arch' must be a string, not a JSON number"),
    ("n-train", changed("data.n_train", "many"), "'data.n_train' must be an integer"),
    ("width", changed("training.config.width", "wide"), "'training.config.width' must be"),
    ("lineage", changed("lineage.init_from.parent", ...), "no 'lineage.init_from.parent'"),
    ("verdict", changed("quality", {}), "quality.verdict"),
]
BAD_RUNS = [(name, {"manifest": m}, needle) for name, m, needle in BAD_MANIFESTS] + [
    ("no-manifest", {"manifest": None}, "not a run directory (no manifest.json"),
    ("not-a-zip", {"model": b"not a zip"}, "not a .keras archive"),
    ("zip-without-model", {"model": keras_zip(("notes.txt",))}, "has no config.json"),
    ("zip-bomb-ish", {"model": keras_zip([f"x{i}" for i in range(100)])}, "100 members"),
]


@runtime
@pytest.mark.parametrize("name, parts, needle", BAD_RUNS, ids=[b[0] for b in BAD_RUNS])
def test_a_malformed_run_is_one_line_from_the_reader(tmp_path, name, parts, needle):
    run = make_run(tmp_path / name, **parts)
    with pytest.raises(RunDirError) as exc:
        open_run(run)
    assert needle in str(exc.value) and "\n" not in str(exc.value)
    assert str(exc.value).startswith(str(run))  # it names the file or folder at fault


@runtime
def test_missing_run_and_missing_model(tmp_path):
    with pytest.raises(RunDirError, match="run directory not found"):
        open_run(tmp_path / "nope")
    run = make_run(tmp_path / "run")
    (run / MODEL_FILE).unlink()
    with pytest.raises(RunDirError, match="no model.keras"):
        open_run(run)


# --- through the trainer and the exporter: before any data, one line, exit 2 --------------------

CLI_CASES = [
    c for c in BAD_RUNS if c[0] in ("no-labels", "version-2", "n-train", "not-a-zip", "oversized")
]
UNKNOWN_ARCH = (
    "unknown-arch",
    {"manifest": changed("arch", "resnet")},
    "this trainer does not know",
)


TRAIN_CASES = [*CLI_CASES, UNKNOWN_ARCH]


@pytest.mark.parametrize("name, parts, needle", TRAIN_CASES, ids=[c[0] for c in TRAIN_CASES])
def test_init_from_a_malformed_run_fails_before_the_data(tmp_path, name, parts, needle):
    pytest.importorskip("keras")
    from click.testing import CliRunner

    from trainer import TrainConfig, train
    from trainer.cli import cli
    from trainer.errors import ConfigError
    from trainer.fit.plan import resolve

    run = make_run(tmp_path / name, **parts)
    config = TrainConfig(
        data=str(tmp_path / "absent.csv"), out=str(tmp_path / "o"), init_from=str(run)
    )
    with pytest.raises(ConfigError, match=needle.replace("(", r"\(").replace("[", r"\[")):
        resolve(config)
    if name == "no-labels":  # once "training failed: KeyError" after decoding the data (exit 1)
        with pytest.raises(ConfigError, match="no 'labels'"):
            train(config)
    r = CliRunner().invoke(
        cli, [str(tmp_path / "absent.csv"), "--out", str(tmp_path / "o"), "--init-from", str(run)]
    )
    assert r.exit_code == 2, r.output
    assert r.stderr.startswith("Error: ") and r.stderr.count("\n") == 1 and needle in r.stderr
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize("name, parts, needle", CLI_CASES, ids=[c[0] for c in CLI_CASES])
def test_edge_export_of_a_malformed_run_is_one_line(tmp_path, name, parts, needle):
    pytest.importorskip("keras")
    from click.testing import CliRunner

    from exporter.cli import export_cmd

    run = make_run(tmp_path / name, **parts)
    r = CliRunner().invoke(export_cmd, [str(run), "--out", str(tmp_path / "m.tflite")])
    assert r.exit_code == 2, r.output
    assert r.stderr.startswith("Error: ") and r.stderr.count("\n") == 1 and needle in r.stderr
    assert not (tmp_path / "m.tflite").exists()
