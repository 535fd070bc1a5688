"""Where a run's records go: the writer of stdout and, beside it, any other sink.

A sink gets every result and every label event as the JSON-ready record that `--json` prints
(see `output`), with the `Item` it was computed from: a sink that keeps pictures (snapshots, a
collection of frames to label) can then keep the original file or the full frame, not the
model-size pixels. `result` is called for every prediction, also in an `--events` run (the
collector needs every frame's scores there too), and `event` for each label change: a sink
keeps what it wants (the stdout writer of an events run prints only the events). Sinks are
called in order on the runner's thread, so a slow sink slows the run: one that talks to the
network queues and returns.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np

_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


@dataclass(frozen=True)
class Item:
    """What a record was computed from."""

    source: str  # the file's path, or the frame source's name (a URL, `camera:N`, a video path)
    # a frame's full-size RGB pixels; None for a file (read `source`)
    frame: np.ndarray | None = None
    index: int | None = None  # the frame's index in its source, or the image's in the run


def safe_name(text: str, limit: int | None = None) -> str:
    """`text` with every run of characters a file name should not hold replaced by `_`."""
    return _UNSAFE.sub("_", text)[:limit]


def source_stem(source: str, default: str) -> str:
    """A short file-name-safe stem of an item's source (a path, a URL, `camera:N`), for the
    files sinks write (snapshots, collected inputs)."""
    return safe_name(Path(str(source)).stem or default, 40)


class Sink(Protocol):
    def result(self, record: dict, item: Item) -> None: ...

    def event(self, record: dict, item: Item) -> None: ...

    def close(self) -> None: ...


class Fanout:
    """Several sinks as one, called in the order given; `close` closes every one of them."""

    def __init__(self, sinks: Sequence[Sink]) -> None:
        self.sinks = list(sinks)

    def result(self, record: dict, item: Item) -> None:
        for sink in self.sinks:
            sink.result(record, item)

    def event(self, record: dict, item: Item) -> None:
        for sink in self.sinks:
            sink.event(record, item)

    def close(self) -> None:
        errors = []
        for sink in self.sinks:
            try:
                sink.close()
            except Exception as exc:  # close the others, then report the first
                errors.append(exc)
        if errors:
            raise errors[0]
