"""Atomic file writes and strict JSON: an artifact appears complete or not at all.

The data goes to a temporary file in the destination's own folder (same filesystem), is flushed
to disk, then renamed over the destination; `os.replace` is atomic on POSIX and Windows, so a
crash or a failed gate never leaves a half-written file where a device would pick it up.
"""

from __future__ import annotations

import json
import math
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from enum import Enum
from pathlib import Path
from typing import BinaryIO


@contextmanager
def replacing(path: str | os.PathLike) -> Iterator[BinaryIO]:
    """Yield a binary file that atomically replaces `path` when the block ends without error.

    On an error the temporary file is removed and `path` is left as it was.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            yield fh
            fh.flush()
            os.fsync(fh.fileno())
        # mkstemp creates 0600; give the file the mode a plain open() would have.
        os.chmod(tmp, 0o666 & ~_UMASK)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    with replacing(path) as fh:
        fh.write(data)
    return Path(path)


def write_text(path: str | os.PathLike, text: str) -> Path:
    return write_bytes(path, text.encode("utf-8"))


def write_json(path: str | os.PathLike, obj: object) -> Path:
    return write_text(path, dumps(obj, indent=2) + "\n")


def dumps(obj: object, **kwargs) -> str:
    """Strict JSON (NaN and inf become null) of results holding numpy values, Paths and enums."""
    return json.dumps(to_jsonable(obj), allow_nan=False, **kwargs)


def to_jsonable(obj: object) -> object:
    if isinstance(obj, dict):
        return {str(k): to_jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [to_jsonable(v) for v in obj]
    if isinstance(obj, Enum):
        return obj.value
    if isinstance(obj, (str, bool, int)) or obj is None:
        return obj
    if hasattr(obj, "tolist"):  # numpy scalars and arrays
        return to_jsonable(obj.tolist())
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, os.PathLike):
        return os.fspath(obj)
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")


def _read_umask() -> int:
    # os.umask can only be read by setting it; done once at import, not racing other threads' writes.
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


_UMASK = _read_umask()
