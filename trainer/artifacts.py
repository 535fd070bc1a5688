"""Writing a run directory: model, manifest, split CSVs, metrics and plots - atomically.

Everything is built in a hidden temporary directory beside the target and renamed into place
at the end, so a crash (or Ctrl-C) never leaves a half-written run that an exporter could pick
up. The run's file names, its manifest's records and their reader and writer are
`edge_common.run`'s: the contract with the exporter and with `--init-from`.
"""

from __future__ import annotations

import os
import platform
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from edge_common.run import TRAIN_SPLIT, VAL_SPLIT
from edge_runtime.evaluation.dataset import write_labels_csv
from edge_runtime.evaluation.metrics import binarize, precision_recall_f1

from .errors import ConfigError


def check_out_dir(out: str | Path) -> Path:
    """The run dir must not exist or be empty: a finished run is never overwritten."""
    out = Path(out).expanduser().resolve()
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise ConfigError(f"{out}: run directory already exists and is not empty; pick a new --out")
    return out


@contextmanager
def atomic_dir(out: Path) -> Iterator[Path]:
    """Yield a temp dir beside `out`; on success rename it to `out`, on failure delete it."""
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.parent / f".{out.name}.tmp-{os.getpid()}"
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir()
    try:
        yield tmp
        check_out_dir(out)
        if out.exists():
            out.rmdir()  # empty (checked): os.replace cannot replace a directory on all OSes
        os.replace(tmp, out)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def versions() -> dict:
    import keras
    import PIL
    import tensorflow as tf

    import edge_runtime

    return {
        "python": platform.python_version(),
        "tensorflow": tf.__version__,
        "keras": keras.__version__,
        "numpy": np.__version__,
        "pillow": PIL.__version__,
        "toolkit": edge_runtime.__version__,
    }


def write_split_csvs(run: Path, train_paths, y_train, val_paths, y_val, labels) -> None:
    """Layout (b) with absolute filenames: the exporter reads calibration/validation images."""
    write_labels_csv(run / TRAIN_SPLIT, [Path(p).resolve() for p in train_paths], y_train, labels)
    write_labels_csv(run / VAL_SPLIT, [Path(p).resolve() for p in val_paths], y_val, labels)


def plot_curves(path: Path, history: dict) -> None:
    """Training/validation loss and validation mAP per epoch."""
    plt = _pyplot()
    epochs = np.arange(1, len(history.get("loss", [])) + 1)
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 4))
    ax1.plot(epochs, history.get("loss", []), label="train loss")
    if "val_loss" in history:
        ax1.plot(epochs, history["val_loss"], label="val loss")
    ax1.set_xlabel("epoch"), ax1.set_ylabel("loss"), ax1.legend(), ax1.grid(alpha=0.3)
    ax2.plot(epochs, history.get("val_map", []), color="C2", label="val mAP")
    (
        ax2.set_xlabel("epoch"),
        ax2.set_ylabel("mAP"),
        ax2.set_ylim(0, 1.02),
        ax2.legend(),
        ax2.grid(alpha=0.3),
    )
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def plot_pr_curves(
    path: Path, y: np.ndarray, scores: np.ndarray, labels: list[str], thresholds: np.ndarray
) -> None:
    """Per-label precision-recall curves on validation, calibrated operating points marked.

    Points come from the shared metric code (precision/recall of thresholded scores) over the
    distinct score values, so the curve means what the reports mean.
    """
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6, 5))
    grid = np.unique(np.concatenate([np.quantile(scores, np.linspace(0, 1, 201)), [1.0 + 1e-9]]))
    prec = np.zeros((grid.size, len(labels)))
    rec = np.zeros_like(prec)
    for i, t in enumerate(grid):
        prec[i], rec[i], _ = precision_recall_f1(y, binarize(scores, t))
    for j, name in enumerate(labels):
        if not y[:, j].any():
            continue
        keep = (prec[:, j] > 0) | (rec[:, j] > 0)
        (line,) = ax.plot(rec[keep, j], prec[keep, j], label=name, drawstyle="steps-post")
        p, r, _ = precision_recall_f1(y[:, [j]], binarize(scores[:, [j]], thresholds[j]))
        ax.plot(r, p, "o", color=line.get_color())
    ax.set_xlabel("recall"), ax.set_ylabel("precision"), ax.set_xlim(0, 1.02), ax.set_ylim(0, 1.02)
    ax.set_title("validation precision-recall (dots: calibrated thresholds)")
    ax.legend(fontsize="small", loc="lower left"), ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")  # no display on a training server
    import matplotlib.pyplot as plt

    return plt
