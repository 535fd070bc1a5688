"""The metadata embedded in a `.tflite` file, readable without TensorFlow.

Layout: the TFLite flatbuffer, followed by a ZIP archive holding `edge_metadata.json`. This is
the same convention TFLite Support uses for a model's associated files (label maps are zipped and
appended): both interpreter packages ignore bytes after the flatbuffer, and Python's `zipfile`
finds an archive at the end of a file by its end-of-central-directory record. A plain `.tflite`
without the archive reads as "no metadata".
"""
from __future__ import annotations

import io
import json
import zipfile
import zlib
from pathlib import Path

from .errors import ModelError

MEMBER = "edge_metadata.json"
SCHEMA_VERSION = 1
TFLITE_IDENTIFIER = b"TFL3"


def check_tflite(data: bytes, name: str = "<model>") -> None:
    """Raise ModelError unless `data` starts like a TFLite flatbuffer (file identifier TFL3)."""
    if len(data) < 8:
        raise ModelError(f"{name}: not a TFLite model (file is {len(data)} bytes)")
    if data[4:8] != TFLITE_IDENTIFIER:
        raise ModelError(f"{name}: not a TFLite model (no 'TFL3' file identifier)")


def strip(data: bytes) -> bytes:
    """The flatbuffer alone, without an appended metadata archive."""
    start = _archive_start(data)
    return data if start is None else data[:start]


def embed(model: bytes, metadata: dict) -> bytes:
    """Return `model` (with any previous metadata removed) followed by `metadata` as a ZIP."""
    check_tflite(model)
    payload = dict(metadata)
    payload.setdefault("schema_version", SCHEMA_VERSION)
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        zf.writestr(MEMBER, json.dumps(payload, indent=1, sort_keys=True))
    return strip(model) + buf.getvalue()


def read(source: bytes | str | Path) -> dict | None:
    """The embedded metadata dict, or None for a plain `.tflite` file."""
    data = Path(source).read_bytes() if isinstance(source, (str, Path)) else source
    start = _archive_start(data)
    if start is None:
        return None
    try:
        with zipfile.ZipFile(io.BytesIO(data[start:])) as zf:
            meta = json.loads(zf.read(MEMBER).decode("utf-8"))
    except (zipfile.BadZipFile, KeyError, ValueError, OSError, zlib.error) as exc:
        raise ModelError(f"embedded metadata is corrupt: {exc}") from None
    if not isinstance(meta, dict):
        raise ModelError(f"embedded metadata is corrupt: a JSON {type(meta).__name__}, not an object")
    return meta


def _archive_start(data: bytes) -> int | None:
    """Offset of an appended archive that holds our member, or None."""
    # The end-of-central-directory record sits in the last 64 KiB + 22 bytes.
    eocd = data.rfind(b"PK\x05\x06", max(0, len(data) - 65557))
    if eocd < 0 or eocd + 22 > len(data):
        return None
    cd_size = int.from_bytes(data[eocd + 12 : eocd + 16], "little")
    cd_offset = int.from_bytes(data[eocd + 16 : eocd + 20], "little")
    # The archive was written on its own, so its offsets are relative to its own start.
    start = eocd - cd_size - cd_offset
    if start < 8 or data[start : start + 4] != b"PK\x03\x04":
        return None
    return start
