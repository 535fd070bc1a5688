"""The metadata embedded in a `.tflite` file, readable without TensorFlow, with bounded reading.

Layout: the TFLite flatbuffer, followed by a ZIP archive of associated files: `labels.txt` (one
label a line, the file the standard TFLite Model Metadata points at) and `edge_metadata.json`
(ours: labels, thresholds, summaries, the SHA-256 of the flatbuffer). This is the convention
TFLite Support and MediaPipe use: files stored uncompressed, offsets counted from the start of
the model file. Both interpreter packages ignore bytes after the flatbuffer. Older models carry a
deflated archive with offsets relative to itself and only the JSON member; they still read.

Model files travel (buckets, fleets, whoever can write to the device), so nothing here trusts
the archive: it is parsed by hand from its directory, every size is checked against a hard cap
before anything is decompressed, decompression itself stops at the cap, and the JSON is checked
for size, depth and the types of the fields the runtime uses. A file over a cap is a one-line
`ModelError`, never a long stall or gigabytes of memory.
"""

from __future__ import annotations

import hashlib
import json
import math
import struct
import zlib
from dataclasses import dataclass
from pathlib import Path

from ..errors import ModelError

MEMBER = "edge_metadata.json"
LABELS_FILE = "labels.txt"
SCHEMA_VERSION = 2  # 2: integrity record, labels.txt beside the JSON, stored members
TFLITE_IDENTIFIER = b"TFL3"

# Caps. Our JSON is ~3 KB for 3 labels and grows ~60 bytes a label: 256 KiB holds thousands of
# labels with room to spare, and is nothing for a Pi to read. Anything bigger is not ours.
MAX_MEMBER_BYTES = 256 * 1024
MAX_ENTRIES = 16  # we write 2 members; a handful more is tolerated, thousands are a bomb
MAX_DIRECTORY_BYTES = 64 * 1024
MAX_JSON_DEPTH = 8  # ours nests 3 deep
MAX_LABELS = 10_000
MAX_LABEL_CHARS = 256
MAX_INPUT_SIDE = 4096  # a dynamic-size model is resized to the metadata's size: bound the tensor

_EOCD, _CDIR, _LOCAL = b"PK\x05\x06", b"PK\x01\x02", b"PK\x03\x04"
_STORED, _DEFLATED = 0, 8


def read_model_file(path: str | Path) -> bytes:
    """The bytes of a model file; a one-line ModelError when it cannot be read."""
    path = Path(path)
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise ModelError(f"{path}: model file not found") from None
    except IsADirectoryError:
        raise ModelError(f"{path}: is a directory, not a model file") from None
    except OSError as exc:
        raise ModelError(f"{path}: cannot read model ({exc.strerror or exc})") from None


def check_tflite(data: bytes, name: str = "<model>") -> None:
    """Raise ModelError unless `data` starts like a TFLite flatbuffer (file identifier TFL3)."""
    if len(data) < 8:
        raise ModelError(f"{name}: not a TFLite model (file is {len(data)} bytes)")
    if data[4:8] != TFLITE_IDENTIFIER:
        raise ModelError(f"{name}: not a TFLite model (no 'TFL3' file identifier)")


# ----------------------------------------------------------------------------- the archive
@dataclass(frozen=True)
class _Entry:
    name: str
    method: int
    crc: int
    compressed: int
    size: int
    header: int  # absolute position of the local header


class Archive:
    """The archive appended to a model, read from its directory with every size checked."""

    def __init__(self, data: bytes, start: int, entries: dict[str, _Entry], name: str) -> None:
        self._data, self.start, self._entries, self._name = data, start, entries, name

    @property
    def names(self) -> list[str]:
        return list(self._entries)

    def read(self, member: str, cap: int = MAX_MEMBER_BYTES) -> bytes | None:
        """The member's bytes (None if absent); ModelError if over `cap` or corrupt."""
        e = self._entries.get(member)
        if e is None:
            return None
        where = f"{self._name}: embedded {member}"
        if e.size > cap or e.compressed > cap:
            raise ModelError(
                f"{where} is {max(e.size, e.compressed):,} bytes, over the {cap:,}-byte limit "
                "(not a metadata file this toolkit wrote)"
            )
        d = self._data
        if d[e.header : e.header + 4] != _LOCAL:
            raise ModelError(f"{where}: corrupt archive (no local header)")
        n, x = struct.unpack_from("<HH", d, e.header + 26)
        begin = e.header + 30 + n + x
        raw = d[begin : begin + e.compressed]
        if len(raw) != e.compressed:
            raise ModelError(f"{where}: truncated archive")
        if e.method == _STORED:
            out = raw
        else:
            try:  # max_length stops a stream that inflates past what the directory declared
                out = zlib.decompressobj(-15).decompress(raw, cap + 1)
            except zlib.error as exc:
                raise ModelError(f"{where}: corrupt archive ({exc})") from None
        if len(out) != e.size:
            raise ModelError(
                f"{where}: holds {len(out):,}+ bytes, not the {e.size:,} its directory says"
            )
        if zlib.crc32(out) != e.crc:
            raise ModelError(f"{where}: corrupt archive (CRC mismatch)")
        return bytes(out)


def archive(data: bytes, name: str = "<model>") -> Archive | None:
    """The archive at the end of `data`, or None when there is none (a plain `.tflite`)."""
    # The end-of-central-directory record is the last 22 bytes (we write no archive comment; a
    # comment of up to 64 KiB is tolerated as the format allows).
    eocd = data.rfind(_EOCD, max(0, len(data) - 65557))
    if eocd < 0 or eocd + 22 > len(data):
        return None
    count, cd_size, cd_offset, comment = struct.unpack_from("<HIIH", data, eocd + 10)
    if eocd + 22 + comment != len(data):
        return None  # those bytes belong to something else (weights can hold them by chance)
    bad = f"{name}: embedded metadata archive is corrupt"
    if count > MAX_ENTRIES or cd_size > MAX_DIRECTORY_BYTES:
        raise ModelError(
            f"{name}: embedded metadata archive has {count} entries / a {cd_size:,}-byte "
            f"directory, over the limits ({MAX_ENTRIES}, {MAX_DIRECTORY_BYTES:,})"
        )
    cd = eocd - cd_size
    # Offsets count from the start of the file (TFLite Support, us now) or of the archive (older
    # exports): the difference is where the archive's own offsets start.
    base = cd - cd_offset
    if cd < 8 or base < 0:
        raise ModelError(f"{bad} (directory outside the file)")
    entries: dict[str, _Entry] = {}
    pos = cd
    for _ in range(count):
        if pos + 46 > eocd or data[pos : pos + 4] != _CDIR:
            raise ModelError(f"{bad} (bad directory entry)")
        method, _t, _d, crc, csize, size, n, x, c = struct.unpack_from("<HHHIIIHHH", data, pos + 10)
        header = base + struct.unpack_from("<I", data, pos + 42)[0]
        if pos + 46 + n + x + c > eocd or not 8 <= header < cd:
            raise ModelError(f"{bad} (bad directory entry)")
        if method not in (_STORED, _DEFLATED):
            raise ModelError(f"{bad} (unsupported compression method {method})")
        member = data[pos + 46 : pos + 46 + n].decode("utf-8", "replace")
        entries[member] = _Entry(member, method, crc, csize, size, header)
        pos += 46 + n + x + c
    if not entries:
        raise ModelError(f"{bad} (no members)")
    start = min(e.header for e in entries.values())
    return Archive(data, start, entries, name)


def strip(data: bytes) -> bytes:
    """The flatbuffer alone, without an appended metadata archive."""
    arc = archive(data)
    return data if arc is None else data[: arc.start]


def flatbuffer_sha256(data: bytes) -> str:
    """SHA-256 (hex) of the model's flatbuffer part: what the integrity record covers."""
    return hashlib.sha256(strip(data)).hexdigest()


# ----------------------------------------------------------------------------- writing
def embed(model: bytes, metadata: dict, files: dict[str, bytes] | None = None) -> bytes:
    """`model` (previous archive removed) + an archive of `files` and `metadata` as our JSON.

    The JSON gains an `integrity` record (SHA-256 of the flatbuffer). Members are stored, with
    offsets from the start of the file, as TFLite Support's metadata populator writes them.
    """
    check_tflite(model)
    flat = strip(model)
    payload = dict(metadata)
    payload.setdefault("schema_version", SCHEMA_VERSION)
    payload["integrity"] = {
        "algorithm": "sha256",
        "flatbuffer_sha256": hashlib.sha256(flat).hexdigest(),
        "flatbuffer_bytes": len(flat),
        "files": {k: hashlib.sha256(v).hexdigest() for k, v in sorted((files or {}).items())},
    }
    members = dict(files or {})
    members[MEMBER] = json.dumps(payload, indent=1, sort_keys=True).encode("utf-8")
    for member, blob in members.items():
        if len(blob) > MAX_MEMBER_BYTES:
            raise ModelError(
                f"{member}: {len(blob):,} bytes, over the {MAX_MEMBER_BYTES:,}-byte metadata limit"
            )
    return flat + _zip_stored(members, offset=len(flat))


def _zip_stored(members: dict[str, bytes], offset: int) -> bytes:
    """A ZIP of stored members whose offsets count from `offset` bytes before it."""
    local, central = bytearray(), bytearray()
    for member, blob in members.items():
        name = member.encode("utf-8")
        crc, at = zlib.crc32(blob), offset + len(local)
        # version 2.0, no flags, stored, DOS time/date 1980-01-01 (reproducible files)
        local += struct.pack(
            "<4sHHHHHIIIHH",
            _LOCAL,
            20,
            0,
            _STORED,
            0,
            0x21,
            crc,
            len(blob),
            len(blob),
            len(name),
            0,
        )
        local += name + blob
        central += struct.pack(
            "<4sHHHHHHIIIHHHHHII",
            _CDIR,
            20,
            20,
            0,
            _STORED,
            0,
            0x21,
            crc,
            len(blob),
            len(blob),
            len(name),
            0,
            0,
            0,
            0,
            0,
            at,
        )
        central += name
    end = struct.pack(
        "<4sHHHHIIH", _EOCD, 0, 0, len(members), len(members), len(central), offset + len(local), 0
    )
    return bytes(local + central + end)


# ----------------------------------------------------------------------------- reading
def read(source: bytes | str | Path, name: str | None = None) -> dict | None:
    """The embedded metadata dict (checked, see `validate`), or None for a plain `.tflite` file."""
    if isinstance(source, (str, Path)):
        name = name or str(source)
        source = Path(source).read_bytes()
    name = name or "<model>"
    arc = archive(source, name)
    if arc is None:
        return None
    raw = arc.read(MEMBER)
    if raw is None:
        return None  # an archive of other associated files only (a TFLite Support model)
    try:
        meta = json.loads(raw.decode("utf-8"))
    except RecursionError:
        raise ModelError(f"{name}: embedded metadata is nested too deeply") from None
    except (ValueError, UnicodeDecodeError) as exc:
        raise ModelError(f"{name}: embedded metadata is corrupt: {exc}") from None
    validate(meta, name)
    return meta


def validate(meta: object, name: str = "<model>") -> None:
    """Raise ModelError unless `meta` has the shape the runtime relies on."""

    def bad(problem: str) -> ModelError:
        return ModelError(f"{name}: unusable embedded metadata: {problem}")

    if not isinstance(meta, dict):
        raise bad(f"a JSON {type(meta).__name__}, not an object")
    if _depth(meta) > MAX_JSON_DEPTH:
        raise bad(f"nested deeper than {MAX_JSON_DEPTH} levels")
    labels = meta.get("labels")
    if labels is not None:
        if not isinstance(labels, list) or not all(isinstance(x, str) for x in labels):
            raise bad("'labels' is not a list of strings")
        if len(labels) > MAX_LABELS or any(len(x) > MAX_LABEL_CHARS for x in labels):
            raise bad(f"over {MAX_LABELS} labels or a label over {MAX_LABEL_CHARS} characters")
    thresholds = meta.get("thresholds")
    if thresholds is not None:
        if not isinstance(thresholds, list) or not all(
            _number(t) and 0 <= t <= 1 for t in thresholds
        ):
            raise bad("'thresholds' is not a list of numbers in [0, 1]")
        if len(thresholds) > MAX_LABELS:
            raise bad(f"over {MAX_LABELS} thresholds")
    for key in ("input", "preprocessing", "integrity"):
        if meta.get(key) is not None and not isinstance(meta[key], dict):
            raise bad(f"'{key}' is not an object")
    size = meta.get("input") or {}
    for key in ("width", "height"):
        v = size.get(key)
        if v is not None and not (
            isinstance(v, int) and not isinstance(v, bool) and 0 < v <= MAX_INPUT_SIDE
        ):
            raise bad(f"input {key} {v!r} is not a whole number in 1..{MAX_INPUT_SIDE}")
    integrity = meta.get("integrity") or {}
    digest = integrity.get("flatbuffer_sha256")
    if digest is not None and not (isinstance(digest, str) and len(digest) == 64):
        raise bad("'integrity.flatbuffer_sha256' is not a SHA-256 hex digest")


def _number(v: object) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _depth(obj: object) -> int:
    """Nesting depth of a JSON value, without recursion."""
    deepest, stack = 0, [(obj, 1)]
    while stack:
        v, d = stack.pop()
        if isinstance(v, dict):
            v = list(v.values())
        if isinstance(v, list):
            deepest = max(deepest, d)
            if d > MAX_JSON_DEPTH:
                return d
            stack.extend((x, d + 1) for x in v)
    return deepest
