"""Keeping the inputs a model is unsure about, to label and train on next (`--collect DIR`).

A model in the field meets pictures unlike its training set. The ones worth a person's time are
those where some label's score sits near that label's threshold: the model could go either way,
so a correct label there moves the next model most. "Near" is measured in log-odds, within
`margin` of the threshold's: calibrated thresholds sit anywhere from 0.02 to 0.98, and a fixed
distance in probability would call a confident 0.001 "near" a threshold of 0.04 (measured: 0.3
in probability kept 46 of 60 images of the very kind the model was trained on). The collector is a sink (see
`sinks`): it sees every prediction with its input, and keeps the doubtful ones, within caps:

    DIR/labels.csv   the trainer's layout (b), `filename` + one 0/1 column per label, pre-filled
                     with the model's decisions: correct it, then
                     `edge-train DIR/labels.csv --out RUN2 --init-from RUN`
    DIR/scores.csv   for the person correcting: the source, frame and time, the labels in doubt,
                     every label's score and the file's SHA-256 (the trainer does not read it)
    DIR/images/      the inputs: a file's own bytes; a frame as PNG (lossless: the pixels the
                     model saw)

Frames of one source are kept at most one every `interval` seconds of that source's time (a
video's position, a live source's clock): at 30 fps, consecutive frames are the same picture.
Files are distinct pictures and are not rate-limited; identical bytes are never kept twice. A
folder that already holds a collection for the same labels is added to (its rows, corrected or
not, are kept) and counts towards the caps. Every file appears whole or not at all
(`edge_runtime.atomic`): an image is written before the rows that name it.
"""

from __future__ import annotations

import csv
import hashlib
import io
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .. import atomic
from ..errors import EdgeError, LabelsError
from ..evaluation.dataset import FILENAME_COLUMN, read_labels_csv, write_labels_csv
from .sinks import Item, source_stem

LABELS_CSV = "labels.csv"
SCORES_CSV = "scores.csv"
IMAGES = "images"
_SCORE_KEYS = ("filename", "source", "frame", "time", "unsure", "sha256")


class CollectError(EdgeError):
    """The collection folder cannot be used (not writable, or it holds another model's labels)."""


@dataclass(frozen=True)
class CollectConfig:
    """Where to collect, what counts as unsure, and the caps."""

    folder: str
    # a label is in doubt when |logit(score) - logit(threshold)| <= margin: its odds are within a
    # factor e^margin of the threshold's (1.0: 0.27-0.73 around 0.5, 0.015-0.10 around 0.04)
    margin: float = 1.0
    interval: float = 2.0  # frames: seconds (of the source's time) between two kept frames
    max_items: int = 500  # inputs in the folder, earlier runs' included
    max_mb: float = 500.0  # megabytes (10^6) of inputs in the folder, earlier runs' included

    def __post_init__(self) -> None:
        if not (self.margin >= 0):
            raise ValueError(f"margin {self.margin} must be >= 0 (log-odds; inf keeps every input)")
        if not (self.interval >= 0 and math.isfinite(self.interval)):
            raise ValueError(f"interval {self.interval} must be a finite number >= 0")
        if self.max_items < 1:
            raise ValueError(f"max_items {self.max_items} must be at least 1")
        if not (self.max_mb > 0):
            raise ValueError(f"max_mb {self.max_mb} must be > 0")


def logit(p: np.ndarray) -> np.ndarray:
    """log(p / (1 - p)) in float64: -inf at 0, inf at 1, NaN outside [0, 1]."""
    p = np.asarray(p, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.log(p) - np.log1p(-p)


def unsure(scores: Sequence[float], thresholds: Sequence[float], margin: float) -> np.ndarray:
    """Per label: is its score within `margin` log-odds of its threshold,
    |logit(score) - logit(threshold)| <= margin?

    `scores` is one row or a batch of rows (..., labels), in the thresholds' order. A NaN score
    is never in doubt (it is broken, not borderline); a score of exactly 0 or 1 only with an
    infinite margin; margin 0 keeps exact ties."""
    s = np.asarray(scores, dtype=np.float64)
    t = np.asarray(thresholds, dtype=np.float64)
    if t.ndim != 1 or s.shape[-1:] != t.shape:
        raise ValueError(f"scores of shape {s.shape} for {t.shape[0]} thresholds")
    ties = s == t  # logit(0) - logit(0) is NaN, but a tie is a tie
    with np.errstate(invalid="ignore"):
        return ties | (np.abs(logit(s) - logit(t)) <= margin)


class Collector:
    """A sink keeping the inputs in doubt in `config.folder` (see the module docstring).

    `labels` and `thresholds` are the run's (a `--threshold` override included). Problems
    writing (a full disk) and reaching a cap are reported once through `on_problem`, and the
    collector stops collecting; the run goes on. `saved` counts this run's inputs, `total` the
    folder's. Raises `CollectError` when the folder cannot be used.
    """

    def __init__(
        self,
        config: CollectConfig,
        labels: Sequence[str],
        thresholds: Sequence[float],
        *,
        on_problem: Callable[[str], None] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if len(labels) != len(thresholds):
            raise ValueError(f"{len(labels)} labels but {len(thresholds)} thresholds")
        self.config, self.labels = config, list(labels)
        self.thresholds = [float(t) for t in thresholds]
        self.folder = Path(config.folder)
        self.on_problem = on_problem or (lambda message: None)
        self._clock = clock
        self.saved = 0
        self.stopped: str | None = None  # why collecting stopped, once it has
        self._last: dict[str, float] = {}  # source -> time of its last kept frame
        self._paths, self._y, self._scores = self._load()
        self._digests = {row["sha256"] for row in self._scores.values() if row.get("sha256")}
        self._bytes = _folder_bytes(self.folder / IMAGES)

    @property
    def total(self) -> int:
        return len(self._paths)

    # ----------------------------------------------------------------------------- the sink
    def result(self, record: dict, item: Item) -> None:
        if self.stopped is not None:
            return
        scores = [float(record["scores"][label]) for label in self.labels]
        doubt = unsure(scores, self.thresholds, self.config.margin)
        if not doubt.any() or not self._due(record, item):
            return
        try:
            if item.frame is None and self._over(Path(item.source).stat().st_size):
                return  # a file too large for what is left: not read into memory at all
            data, suffix = _encoded(item)
        except OSError as exc:  # a watched file gone, unreadable: not ours to fail the run for
            self.on_problem(f"collect: cannot read {item.source} ({exc.strerror or exc}); skipped")
            return
        digest = hashlib.sha256(data).hexdigest()
        if digest in self._digests:
            return
        if self.total >= self.config.max_items:
            self._stop(f"{self.folder} holds {self.total} inputs, the cap")
            return
        if self._over(len(data)):
            return
        name = self._free_name(item, suffix)
        present = set(record["labels"])
        row = {
            "filename": name.as_posix(),
            "source": item.source,
            "frame": "" if item.frame is None else item.index,
            "time": record.get("time", ""),
            "unsure": " ".join(lab for lab, d in zip(self.labels, doubt) if d),
            "sha256": digest,
            **{lab: f"{s:.6f}" for lab, s in zip(self.labels, scores)},
        }
        try:
            atomic.write_bytes(self.folder / name, data)  # the image first, then the rows
            self._paths.append(name.as_posix())
            self._y.append([int(lab in present) for lab in self.labels])
            self._scores[name.as_posix()] = row
            self._write()
        except OSError as exc:
            self._stop(f"cannot write into {self.folder} ({exc.strerror or exc})")
            return
        self.saved += 1
        self._bytes += len(data)
        self._digests.add(digest)
        if item.frame is not None:
            self._last[item.source] = self._when(record)

    def event(self, record: dict, item: Item) -> None:
        """Label events carry no new scores: every prediction already came through `result`."""

    def close(self) -> None:
        """Nothing to flush: each kept input was written with its rows."""

    # ----------------------------------------------------------------------------- helpers
    def _when(self, record: dict) -> float:
        t = record.get("time")  # seconds into a video file; an ISO string for a live source
        return float(t) if isinstance(t, (int, float)) else self._clock()

    def _due(self, record: dict, item: Item) -> bool:
        if item.frame is None:
            return True
        last = self._last.get(item.source)
        return last is None or self._when(record) - last >= self.config.interval

    def _over(self, size: int) -> bool:
        """Would `size` more bytes break the disk cap? Stops collecting if so."""
        if self._bytes + size <= self.config.max_mb * 1e6:
            return False
        self._stop(f"{self.folder} would exceed its {self.config.max_mb:g} MB cap")
        return True

    def _free_name(self, item: Item, suffix: str) -> Path:
        # Numbered in collection order; a number is skipped when a file of an earlier run that
        # left the CSV (a row deleted by hand) still holds it.
        n = self.total
        while True:
            name = Path(IMAGES) / f"{n:06d}_{_stem(item)}{suffix}"
            if not (self.folder / name).exists():
                return name
            n += 1

    def _stop(self, why: str) -> None:
        self.stopped = why
        self.on_problem(f"collect: {why}; collecting no more ({self.total} inputs kept)")

    def _write(self) -> None:
        write_labels_csv(self.folder / LABELS_CSV, self._paths, np.array(self._y), self.labels)
        buf = io.StringIO(newline="")
        w = csv.DictWriter(buf, [*_SCORE_KEYS, *self.labels], extrasaction="ignore")
        w.writeheader()
        for path in self._paths:
            w.writerow(self._scores.get(path, {"filename": path}))
        atomic.write_text(self.folder / SCORES_CSV, buf.getvalue())

    def _load(self) -> tuple[list[str], list[list[int]], dict[str, dict]]:
        """The folder's collection so far: (filenames, 0/1 rows, scores rows by filename)."""
        folder = self.folder
        try:
            folder.mkdir(parents=True, exist_ok=True)
            probe = atomic.write_bytes(folder / ".collect-probe", b"")
            probe.unlink()
        except OSError as exc:
            raise CollectError(f"{folder}: cannot write there ({exc.strerror or exc})") from None
        csv_path = folder / LABELS_CSV
        if not csv_path.is_file() or not _has_rows(csv_path):
            return [], [], {}
        try:
            table = read_labels_csv(csv_path, labels=self.labels, check_files=False)
        except LabelsError as exc:
            raise CollectError(
                f"{exc}; collect into another folder, or move that labels.csv away"
            ) from None
        if table.skipped:
            raise CollectError(
                f"{csv_path}: {table.skipped[0]}: fix it before collecting more into {folder}"
            )
        base = folder.resolve()
        paths = [
            p.relative_to(base).as_posix() if p.is_relative_to(base) else str(p)
            for p in table.paths
        ]
        return paths, table.y.astype(int).tolist(), _read_scores(folder / SCORES_CSV)


def _has_rows(path: Path) -> bool:
    try:
        with open(path, newline="", encoding="utf-8-sig") as fh:
            return sum(1 for row in csv.reader(fh) if any(c.strip() for c in row)) > 1
    except (OSError, UnicodeDecodeError, csv.Error):
        return True  # let the reader say what is wrong with it


def _read_scores(path: Path) -> dict[str, dict]:
    """scores.csv by filename (informational: a missing or unreadable one starts afresh)."""
    try:
        with open(path, newline="", encoding="utf-8") as fh:
            return {row[FILENAME_COLUMN]: row for row in csv.DictReader(fh) if row.get("filename")}
    except (OSError, UnicodeDecodeError, csv.Error, KeyError):
        return {}


def _folder_bytes(folder: Path) -> int:
    if not folder.is_dir():
        return 0
    return sum(p.stat().st_size for p in folder.iterdir() if p.is_file())


def _encoded(item: Item) -> tuple[bytes, str]:
    """The bytes to keep and their suffix: a file's own bytes, or a frame as PNG."""
    if item.frame is None:
        path = Path(item.source)
        return path.read_bytes(), path.suffix.lower() or ".img"
    from PIL import Image

    buf = io.BytesIO()
    # Fast PNG compression: a kept frame is written on the runner's thread, between two frames.
    Image.fromarray(np.ascontiguousarray(item.frame)).save(buf, "PNG", compress_level=1)
    return buf.getvalue(), ".png"


def _stem(item: Item) -> str:
    stem = source_stem(item.source, "input")
    return stem if item.frame is None else f"{stem}_f{item.index:06d}"
