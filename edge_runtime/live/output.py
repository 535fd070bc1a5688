"""Writers for `edge-infer predict`: a table, JSON lines or CSV; results or label events.

One schema for every input: a result is `file` (the path, URL or `camera:N`), `scores` and
`labels`, plus `frame` (index in the source) and `time` (seconds into a video file, or the
wall-clock ISO time for a camera or a stream) when it comes from a frame source. An event is
`file`, `label`, `state` (on/off), `frame`, `time`, `score` (and `snapshot` with --snapshot).
Every line is flushed as written: a reader downstream (or a service's journal) sees each result
as soon as it exists, and a stopped run leaves only complete lines.
"""

from __future__ import annotations

import csv
import sys
from collections.abc import Sequence
from enum import Enum
from typing import TextIO

from .. import atomic

DEFAULT_WIDTH = 40
EVENT_KEYS = ("file", "label", "state", "frame", "time", "score")


class Format(str, Enum):
    TABLE = "table"
    JSON = "json"
    CSV = "csv"


class Writer:
    """Writes records one at a time. `live` adds the `frame` and `time` columns to a CSV of
    results, `snapshots` the `snapshot` column to a CSV of events.

    `names` are the inputs known up front; they size the table's file column (none: a default).
    """

    def __init__(
        self,
        fmt: Format,
        labels: Sequence[str],
        *,
        live: bool = False,
        events: bool = False,
        snapshots: bool = False,
        names: Sequence[str] = (),
        out: TextIO | None = None,
    ) -> None:
        self.fmt, self.labels, self.live, self.events = Format(fmt), list(labels), live, events
        self._event_keys = EVENT_KEYS + (("snapshot",) if snapshots else ())
        self.out = out
        self._csv = None
        self._width = min(max([len(n) for n in names] + [4]), 60) if names else DEFAULT_WIDTH
        self._started = False

    def _stream(self) -> TextIO:
        return (
            self.out if self.out is not None else sys.stdout
        )  # looked up late: CliRunner swaps it

    def _line(self, text: str) -> None:
        stream = self._stream()
        stream.write(text + "\n")
        stream.flush()

    def _start(self) -> None:
        self._started = True
        if self.fmt is Format.CSV:
            self._csv = csv.writer(self._stream(), lineterminator="\n")
            if self.events:
                self._csv.writerow(self._event_keys)
            else:
                self._csv.writerow(
                    ["file", *(["frame", "time"] if self.live else []), *self.labels, "labels"]
                )
        elif self.fmt is Format.TABLE:
            if self.events:
                self._line(
                    f"{'time':<29} {'file':<{self._width}} {'frame':>7}  label: state (score)"
                )
            else:
                head = "".join(f"{lab[:10]:>11}" for lab in self.labels)
                self._line(f"{'file':<{self._width}} {head}  present")

    def result(self, record: dict, item: object = None) -> None:
        """Write one result: keys file, scores, labels (+ frame, time). An events writer prints
        only the events: it lets results pass."""
        if self.events:
            return
        if not self._started:
            self._start()
        if self.fmt is Format.JSON:
            self._line(atomic.dumps(record))
        elif self.fmt is Format.CSV:
            frame = [record.get("frame", ""), record.get("time", "")] if self.live else []
            self._csv.writerow(
                [
                    record["file"],
                    *frame,
                    *(f"{record['scores'][k]:.6f}" for k in self.labels),
                    " ".join(record["labels"]),
                ]
            )
            self._stream().flush()
        else:
            name = str(record["file"])
            if "frame" in record:
                name = f"{name}#{record['frame']}"
            cells = "".join(f"{record['scores'][k]:>11.3f}" for k in self.labels)
            self._line(f"{self._fit(name)} {cells}  {', '.join(record['labels']) or '-'}")

    def event(self, record: dict, item: object = None) -> None:
        """Write one label event: keys file, label, state, frame, time, score (+ snapshot)."""
        if not self._started:
            self._start()
        if self.fmt is Format.JSON:
            self._line(atomic.dumps(record))
        elif self.fmt is Format.CSV:
            self._csv.writerow([record.get(k) for k in self._event_keys])
            self._stream().flush()
        else:
            snap = f"  -> {record['snapshot']}" if record.get("snapshot") else ""
            self._line(
                f"{str(record['time']):<29} {self._fit(str(record['file']))} {record['frame']:>7}  "
                f"{record['label']}: {record['state']} ({record['score']:.3f}){snap}"
            )

    def _fit(self, name: str) -> str:
        if len(name) > self._width:
            name = "..." + name[-(self._width - 3) :]
        return f"{name:<{self._width}}"

    def close(self) -> None:
        """Nothing to release: every line was flushed as written (stdout belongs to the caller)."""
