"""What `edge-infer predict` is given, expanded: files, directories, globs, `-`, videos, streams.

Directories are searched recursively for images (by extension, hidden files skipped); globs
match files; `-` reads image paths (or folders, globs) from stdin, lazily, one per line; a path with a video
extension is a video file and a URL (`rtsp://`, `http://...`) a stream, both read through
OpenCV (see `sources`). Nothing here opens an image: a problem found while expanding (no such
file, an empty directory, a glob matching nothing) travels with the item for the caller to report.
"""

from __future__ import annotations

import glob
import sys
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import TextIO

from .sources import is_stream, is_video
from .watch import is_image_name


class Kind(str, Enum):
    IMAGE = "image"
    VIDEO = "video"
    STREAM = "stream"


@dataclass(frozen=True)
class Input:
    name: str
    kind: Kind = Kind.IMAGE
    problem: str | None = None  # why nothing can be classified here (None: usable)

    @property
    def live(self) -> bool:
        """A frame source (video file or stream) rather than one image."""
        return self.kind is not Kind.IMAGE


def _kind(path: str) -> Kind:
    return Kind.VIDEO if is_video(path) else Kind.IMAGE


def expand_inputs(items: Iterable[str], stdin: TextIO | None = None) -> Iterator[Input]:
    """Yield an `Input` per image, video or stream named by `items`, in order."""
    for item in items:
        if item == "-":
            stream = stdin if stdin is not None else sys.stdin
            for line in stream:
                line = line.strip()
                if line:
                    # stdin carries image paths (a `find` pipeline); videos and streams are
                    # named as arguments, so the output's columns are known before stdin is read.
                    for found in expand_inputs([line]):
                        yield Input(found.name, Kind.IMAGE, found.problem)
            continue
        if is_stream(item):
            yield Input(item, Kind.STREAM)
            continue
        path = Path(item)
        if path.is_dir():
            found = sorted(p for p in path.rglob("*") if p.is_file() and is_image_name(p))
            if not found:
                yield Input(item, problem="directory holds no images")
            for p in found:
                yield Input(str(p))
        elif path.exists():
            yield Input(item, _kind(item))
        elif glob.has_magic(item):
            matches = sorted(m for m in glob.glob(item, recursive=True) if Path(m).is_file())
            if not matches:
                yield Input(item, problem="no files match this pattern")
            for m in matches:
                yield Input(m, _kind(m))
        else:
            yield Input(item, _kind(item), "file not found")
