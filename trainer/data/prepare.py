"""From labels CSV(s) to decoded, split training and validation images (views of shards on disk)."""

from __future__ import annotations

import sys
from dataclasses import dataclass

import numpy as np

from edge_common.shards import ShardView
from edge_runtime.evaluation.dataset import LabelTable, SkippedRow, read_labels_csv

from ..config import TrainConfig
from ..errors import DataError
from .split import iterative_split
from .streaming import streamed_table


@dataclass(frozen=True)
class Split:
    """One side of the data: table (paths, labels, y) and its decoded images."""

    table: LabelTable
    # (n, size, size, 3) uint8 in shards on disk, exactly `load_image(path, (size, size))` per row
    x: ShardView

    @property
    def y(self) -> np.ndarray:
        return self.table.y


@dataclass(frozen=True)
class PreparedData:
    labels: list[str]
    train: Split
    val: Split
    warnings: list[str]
    skipped: list[SkippedRow]  # every row left out, train and val CSVs together


def prepare_data(config: TrainConfig) -> PreparedData:
    """Read the CSV(s), decode every image through `load_image`, drop unreadable ones, split.

    Without `val_data` the rows are split by iterative stratification (`val_fraction`, `seed`);
    with it, `val_data` must use the same labels (its rows must be labelled with known names).
    """
    size = (config.input_size, config.input_size)
    table, x = _read_decoded(config.data, None, size, config)
    if config.val_data:
        val_table, x_val = _read_decoded(config.val_data, table.labels, size, config)
        train, val = Split(table, x), Split(val_table, x_val)
        sources = [table, val_table]
    else:
        if len(table) < 4:
            raise DataError(
                f"{table.csv_path}: only {len(table)} usable images; need at least 4 to split"
            )
        tr, va = iterative_split(table.y, config.val_fraction, config.seed)
        train, val = Split(table.subset(tr), x[tr]), Split(table.subset(va), x[va])
        sources = [table]  # both subsets carry the whole CSV's warnings and skipped rows
    warnings = [w for t in sources for w in t.warnings]
    for j, name in enumerate(train.table.labels):
        if train.y[:, j].any() and not val.y[:, j].any():
            warnings.append(
                f"label {name!r} has no positive in the validation set: its threshold stays 0.5"
            )
    skipped = [s for t in sources for s in t.skipped]
    return PreparedData(list(train.table.labels), train, val, warnings, skipped)


def _read_decoded(
    csv_path: str, labels: list[str] | None, size: tuple[int, int], config: TrainConfig
) -> tuple[LabelTable, ShardView]:
    table = read_labels_csv(csv_path, labels=labels)
    if not table.labels:
        raise DataError(
            f"{table.csv_path}: no labels (no label columns, or every 'labels' cell is empty); "
            "a model needs at least one label"
        )
    table, x = streamed_table(table, size, config)
    if config.verbose:
        print(f"{table.csv_path.name}: {table.summary()}", file=sys.stderr)
        for s in table.skipped[:20]:
            print(f"  skipped {s}", file=sys.stderr)
        if len(table.skipped) > 20:
            print(f"  ... and {len(table.skipped) - 20} more skipped rows", file=sys.stderr)
    return table, x
