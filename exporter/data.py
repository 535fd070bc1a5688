"""Calibration and held-out images for an export, found through the run's manifest."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np

from edge_common.images import load_table
from edge_runtime.errors import DataError, LabelsError
from edge_runtime.evaluation.dataset import LabelTable, read_labels_csv

from .config import ExportConfig


def _table(csv: str | Path, run, what: str) -> LabelTable:
    try:
        table = read_labels_csv(csv, labels=run.labels)
    except LabelsError as exc:
        raise DataError(f"{what} images: {exc}") from None
    if len(table) == 0:
        raise DataError(f"{csv}: no usable {what} images")
    return table


def _split_csv(path: Path, what: str) -> Path:
    """A split CSV the run's manifest names, which must still be there."""
    if not path.is_file():
        raise DataError(
            f"{path}: {what} CSV named by the manifest is missing; pass one with --data / --val-data"
        )
    return path


def pick_calibration(y: np.ndarray, n: int, seed: int) -> list[int]:
    """Indices of `n` rows of a multi-hot `y` in which every label with a positive is represented.

    About half the budget goes to positives of each label in turn (an equal share per label), the
    rest is drawn at random from the remaining rows, so calibration also sees typical images.
    """
    rng = np.random.default_rng(seed)
    n = min(n, len(y))
    per_label = max(1, n // (2 * max(1, y.shape[1])))
    chosen: list[int] = []
    for j in range(y.shape[1]):
        chosen += rng.permutation(np.flatnonzero(y[:, j]))[:per_label].tolist()
    chosen = list(dict.fromkeys(chosen))  # drop duplicates, keep order
    taken = set(chosen)
    rest = [i for i in rng.permutation(len(y)).tolist() if i not in taken]
    return sorted((chosen + rest)[:n])


def representative_images(
    config: ExportConfig, run, log: Callable[[str], None], exclude: frozenset[Path] = frozenset()
) -> tuple[list[np.ndarray], LabelTable]:
    """Up to `calibration_size` training images in which every label is represented, and their rows.

    int8 calibration sets each tensor's range from these images; a label whose positives never
    appear would get activation ranges fitted to its absence. Images in `exclude` (the parity
    set) are never used, so the gate always judges on images the converter has not seen.
    """
    csv = config.data or _split_csv(run.dir.train_split, "calibration")
    table = _table(csv, run, "calibration")
    if exclude:
        table = table.subset([i for i, p in enumerate(table.paths) if p not in exclude])
        if len(table) == 0:
            raise DataError(f"{csv}: every calibration image is also a held-out image")
    table = table.subset(pick_calibration(table.y, config.calibration_size, config.seed))
    table, x = load_table(table, run.input_size, "calibration", cache_dir=config.cache_dir)
    log(f"calibration: {len(x)} images from {csv}")
    return list(x), table


def held_out_images(
    config: ExportConfig, run, log: Callable[[str], None]
) -> tuple[np.ndarray, np.ndarray, frozenset[Path]]:
    """The validation images, their 0/1 labels, and their paths (kept out of calibration)."""
    csv = config.val_data or _split_csv(run.dir.val_split, "validation")
    table = _table(csv, run, "validation")
    table, x = load_table(table, run.input_size, "validation", cache_dir=config.cache_dir)
    y = table.y
    log(f"parity set: {len(x)} held-out images from {csv}")
    return x, y, frozenset(table.paths)
