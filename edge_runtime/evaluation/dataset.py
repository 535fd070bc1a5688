"""Reading a labels CSV into a multi-hot label table, with row-level diagnostics; and writing one.

TensorFlow-free: the trainer and the device's `edge-infer eval` read labels the same way, and the
trainer's split files and the device's `--collect` folder are written by the one `write_labels_csv`.

Two layouts, detected from the header:

(a) `filename,labels` - labels joined by space, `;` or `|` (Kaggle style). An empty cell is a
    valid negative (no label present). Label order: sorted unique names. If a cell holds `;` or
    `|`, those are its separators and names may contain spaces; otherwise whitespace separates.
(b) `filename,<label1>,<label2>,...` - one 0/1 column per label. Label order: column order.

Paths are relative to the CSV's folder (absolute paths are kept). When `labels` is given (from a
model), that order is used and names outside it / missing columns raise `LabelsError`.

Bad rows are skipped and recorded (row number = line number in the file, header is line 1):
missing image file, a 0/1 column holding another value, a duplicate filename (the later row).
An empty label name from doubled separators (`cat;;dog`) is not an error: the empty piece is
dropped and a warning names the row, because the intent (`cat`, `dog`) is unambiguous.
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .. import atomic
from ..errors import LabelsError

FILENAME_COLUMN = "filename"
LABELS_COLUMN = "labels"
_HARD_SEP = re.compile(r"[;|]")
_TRUE = {"1", "1.0"}
_FALSE = {"0", "0.0"}


@dataclass(frozen=True)
class SkippedRow:
    """A CSV row left out, and why."""

    row: int  # line number in the CSV (header = 1)
    filename: str
    reason: str

    def __str__(self) -> str:
        return f"row {self.row} ({self.filename}): {self.reason}"


@dataclass(frozen=True)
class LabelTable:
    """The usable rows of a labels CSV: absolute image paths and a multi-hot matrix."""

    csv_path: Path
    paths: list[Path]
    labels: list[str]
    y: np.ndarray  # (n, n_labels) uint8
    rows: list[int] = field(default_factory=list)  # CSV line number of each used row
    skipped: list[SkippedRow] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.paths)

    def summary(self) -> str:
        return f"{len(self.paths)} rows used, {len(self.skipped)} skipped"

    def subset(
        self, index: Sequence[int] | np.ndarray, extra_skipped: Sequence[SkippedRow] = ()
    ) -> LabelTable:
        """The rows at `index` (same labels), optionally recording more skipped rows."""
        idx = [int(i) for i in index]
        return LabelTable(
            csv_path=self.csv_path,
            paths=[self.paths[i] for i in idx],
            labels=list(self.labels),
            y=self.y[idx],  # an empty idx gives (0, n_labels)
            rows=[self.rows[i] for i in idx] if self.rows else [],
            skipped=list(self.skipped) + list(extra_skipped),
            warnings=list(self.warnings),
        )


def read_labels_csv(
    csv_path: str | Path,
    labels: Sequence[str] | None = None,
    check_files: bool = True,
) -> LabelTable:
    """Read a labels CSV (layout auto-detected, see module doc) into a `LabelTable`.

    Raises `LabelsError` for a missing/unreadable file, no header or no `filename` column,
    labels that do not match `labels`, or no usable row at all.
    """
    csv_path = Path(csv_path).expanduser().resolve()
    if not csv_path.is_file():
        raise LabelsError(f"{csv_path}: labels CSV not found")
    try:
        with open(csv_path, newline="", encoding="utf-8-sig") as fh:
            records = list(csv.reader(fh))
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise LabelsError(f"{csv_path}: cannot read CSV ({exc})") from None
    if not records or not any(c.strip() for c in records[0]):
        raise LabelsError(f"{csv_path}: empty file, expected a header row starting with 'filename'")
    header = [c.strip() for c in records[0]]
    lower = [c.lower() for c in header]
    if FILENAME_COLUMN not in lower:
        raise LabelsError(
            f"{csv_path}: no 'filename' column in the header {header!r}; expected "
            "'filename,labels' or 'filename,<label1>,<label2>,...'"
        )
    fcol = lower.index(FILENAME_COLUMN)
    others = [i for i in range(len(header)) if i != fcol]
    if [lower[i] for i in others] == [LABELS_COLUMN]:
        parsed = _read_joined(csv_path, records, fcol, others[0], labels)
    else:
        parsed = _read_columns(csv_path, records, header, fcol, others, labels)
    names, raw_rows, skipped, warns = parsed
    return _finish(csv_path, names, raw_rows, skipped, warns, check_files)


def _split_labels(cell: str) -> tuple[list[str], bool]:
    """Label names of one `labels` cell, and whether an empty name was dropped.

    With `;` or `|` in the cell those are the separators (a name may then hold spaces, e.g.
    `golden retriever;cat`); otherwise names are split on whitespace, where repeated spaces are
    just formatting.
    """
    if not cell:
        return [], False
    if _HARD_SEP.search(cell):
        pieces = [p.strip() for p in _HARD_SEP.split(cell)]
        return [p for p in pieces if p], any(not p for p in pieces)
    return cell.split(), False


# A parsed row before file checks: (line number, filename as written, set of label indices).
_Row = tuple[int, str, list[int]]


def _read_joined(
    csv_path: Path, records: list[list[str]], fcol: int, lcol: int, labels: Sequence[str] | None
) -> tuple[list[str], list[_Row], list[SkippedRow], list[str]]:
    warns: list[str] = []
    skipped: list[SkippedRow] = []
    pending: list[tuple[int, str, list[str]]] = []
    for line, rec in enumerate(records[1:], start=2):
        if not any(c.strip() for c in rec):
            continue  # blank line
        fname = rec[fcol].strip() if fcol < len(rec) else ""
        if not fname:
            skipped.append(SkippedRow(line, "", "empty filename"))
            continue
        cell = rec[lcol].strip() if lcol < len(rec) else ""
        names, empty = _split_labels(cell)
        if empty:
            warns.append(f"row {line} ({fname}): empty label name in {cell!r} ignored")
        pending.append((line, fname, names))
    used = {n for _, _, ns in pending for n in ns}
    if labels is None:
        order = sorted(used)
    else:
        order = list(labels)
        unknown = used.difference(order)
        if unknown:
            first = next((ln, f) for ln, f, ns in pending if unknown.intersection(ns))
            raise LabelsError(
                f"{csv_path}: label(s) {sorted(unknown)} not known to the model (labels: {order}); "
                f"first at row {first[0]} ({first[1]})"
            )
    index = {n: j for j, n in enumerate(order)}
    rows = [(ln, f, sorted({index[n] for n in ns})) for ln, f, ns in pending]
    return order, rows, skipped, warns


def _read_columns(
    csv_path: Path,
    records: list[list[str]],
    header: list[str],
    fcol: int,
    cols: list[int],
    labels: Sequence[str] | None,
) -> tuple[list[str], list[_Row], list[SkippedRow], list[str]]:
    names = [header[i] for i in cols]
    if any(not n for n in names):
        raise LabelsError(f"{csv_path}: header {header!r} has an empty column name")
    if len(set(names)) != len(names):
        dup = sorted({n for n in names if names.count(n) > 1})
        raise LabelsError(f"{csv_path}: duplicate label column(s) {dup}")
    if labels is None:
        order = names
    else:
        order = list(labels)
        extra = [n for n in names if n not in order]
        missing = [n for n in order if n not in names]
        if extra or missing:
            raise LabelsError(
                f"{csv_path}: label columns do not match the model's labels {order}"
                + (f"; missing column(s) {missing}" if missing else "")
                + (f"; unknown column(s) {extra}" if extra else "")
            )
    pos = {n: order.index(n) for n in names}
    skipped: list[SkippedRow] = []
    rows: list[_Row] = []
    for line, rec in enumerate(records[1:], start=2):
        if not any(c.strip() for c in rec):
            continue
        fname = rec[fcol].strip() if fcol < len(rec) else ""
        if not fname:
            skipped.append(SkippedRow(line, "", "empty filename"))
            continue
        present, bad = [], None
        for name, i in zip(names, cols):
            v = rec[i].strip() if i < len(rec) else ""
            if v in _TRUE:
                present.append(pos[name])
            elif v not in _FALSE:
                bad = f"column {name!r} has value {v!r}, expected 0 or 1"
                break
        if bad:
            skipped.append(SkippedRow(line, fname, bad))
            continue
        rows.append((line, fname, sorted(present)))
    return order, rows, skipped, []


def _finish(
    csv_path: Path,
    names: list[str],
    raw: list[_Row],
    skipped: list[SkippedRow],
    warns: list[str],
    check_files: bool,
) -> LabelTable:
    base = csv_path.parent
    seen: dict[Path, int] = {}
    paths: list[Path] = []
    used_rows: list[int] = []
    y_rows: list[list[int]] = []
    for line, fname, present in raw:
        p = Path(fname).expanduser()
        p = (p if p.is_absolute() else base / p).resolve()
        if p in seen:
            skipped.append(
                SkippedRow(line, fname, f"duplicate of row {seen[p]} (later row skipped)")
            )
            continue
        seen[p] = line
        if check_files and not p.is_file():
            skipped.append(SkippedRow(line, fname, f"image file not found ({p})"))
            continue
        paths.append(p)
        used_rows.append(line)
        y_rows.append(present)
    if not paths:
        detail = f"; first problem: {skipped[0]}" if skipped else ""
        raise LabelsError(f"{csv_path}: no usable rows ({len(skipped)} skipped){detail}")
    y = np.zeros((len(paths), len(names)), dtype=np.uint8)
    for i, present in enumerate(y_rows):
        y[i, present] = 1
    for j, n in enumerate(names):
        if not y[:, j].any():
            warns.append(f"label {n!r} has no positive example")
    skipped.sort(key=lambda s: s.row)
    return LabelTable(csv_path, paths, list(names), y, used_rows, skipped, warns)


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
