"""What the device-only install (no TensorFlow) does with the training-side commands."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys

import pytest

pytestmark = pytest.mark.runtime


@pytest.mark.skipif(
    importlib.util.find_spec("keras") is not None, reason="TensorFlow/Keras is installed here"
)
def test_edge_export_without_tensorflow_says_what_to_install(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    (run / "manifest.json").write_text(
        json.dumps({"labels": ["a"], "input_size": [8, 8], "thresholds": [0.5]})
    )
    (run / "model.keras").write_bytes(b"placeholder")
    proc = subprocess.run(
        [sys.executable, "-c", "from exporter.cli import main; main()", str(run)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2
    assert (
        proc.stderr.strip()
        == "Error: edge-export needs TensorFlow: pip install 'edge-multilabel[train]'"
    )


@pytest.mark.skipif(
    importlib.util.find_spec("keras") is not None, reason="TensorFlow/Keras is installed here"
)
def test_edge_train_without_tensorflow_says_what_to_install(tmp_path):
    csv = tmp_path / "labels.csv"
    csv.write_text("filename,labels\na.png,cat\n")
    proc = subprocess.run(
        [
            sys.executable,
            "-c",
            "from trainer.cli import main; main()",
            str(csv),
            "--out",
            str(tmp_path / "run"),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2
    assert (
        proc.stderr.strip()
        == "Error: edge-train needs TensorFlow: pip install 'edge-multilabel[train]'"
    )
