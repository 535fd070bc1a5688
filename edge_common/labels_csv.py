"""Writing a labels CSV (the trainer's split files); the reader is `edge_runtime.evaluation.dataset`."""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from edge_runtime import atomic
from edge_runtime.evaluation.dataset import FILENAME_COLUMN


def write_labels_csv(
    path: str | Path, paths: Sequence[Path | str], y: np.ndarray, labels: Sequence[str]
) -> None:
    """Write layout (b): `filename` (as given) plus one 0/1 column per label, atomically."""
    buf = io.StringIO(newline="")
    w = csv.writer(buf)
    w.writerow([FILENAME_COLUMN, *labels])
    for p, row in zip(paths, np.asarray(y)):
        w.writerow([str(p), *(int(v) for v in row)])
    atomic.write_text(path, buf.getvalue())
