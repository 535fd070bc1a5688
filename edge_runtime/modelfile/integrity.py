"""Was the model changed after export? The SHA-256 of the flatbuffer recorded in its metadata.

The exporter records, in `edge_metadata.json`, the SHA-256 and size of the flatbuffer (the model,
standard metadata included) and of each associated file (`labels.txt`). A damaged copy, a
swapped weight file or a replaced label list no longer matches. This detects accidents and
careless swaps, not an attacker: whoever can rewrite the model can rewrite the record too. For
that, compare the whole file's SHA-256 with one published out of band (or sign it).
"""

from __future__ import annotations

import hashlib
from dataclasses import asdict, dataclass, field
from enum import Enum
from pathlib import Path

from ..errors import ModelError
from . import metadata as _metadata


class Status(str, Enum):
    INTACT = "intact"  # every recorded hash matches
    MODIFIED = "modified"  # something changed after export
    UNVERIFIED = "unverified"  # nothing recorded to compare with (older export, plain .tflite)


@dataclass(frozen=True)
class IntegrityReport:
    status: Status
    sha256: str  # of the flatbuffer as it is now
    expected_sha256: str | None
    problems: list[str] = field(default_factory=list)

    @property
    def intact(self) -> bool:
        return self.status is Status.INTACT

    def to_dict(self) -> dict:
        d = asdict(self)
        d["status"] = self.status.value
        return d

    def line(self) -> str:
        short = self.sha256[:16]
        if self.status is Status.INTACT:
            return f"intact (flatbuffer and files match their SHA-256 recorded at export; sha256 {short}...)"
        if self.status is Status.UNVERIFIED:
            return f"unverified: {'; '.join(self.problems)} (sha256 {short}...)"
        return f"MODIFIED after export: {'; '.join(self.problems)}"


def check(data: bytes, name: str = "<model>") -> IntegrityReport:
    """Compare the model's parts with the hashes its metadata records. Raises ModelError only
    for a file that is not a readable model (corrupt archive, not TFLite)."""
    _metadata.check_tflite(data, name)
    arc = _metadata.archive(data, name)
    flat = data if arc is None else data[: arc.start]
    actual = hashlib.sha256(flat).hexdigest()
    meta = _metadata.read(data, name)
    record = (meta or {}).get("integrity")
    if not record or not record.get("flatbuffer_sha256"):
        why = (
            "no metadata"
            if meta is None
            else "no SHA-256 recorded (exported before integrity records)"
        )
        return IntegrityReport(Status.UNVERIFIED, actual, None, [why])
    problems = []
    if record.get("flatbuffer_bytes") not in (None, len(flat)):
        problems.append(
            f"flatbuffer is {len(flat):,} bytes, {record['flatbuffer_bytes']:,} at export"
        )
    if record["flatbuffer_sha256"] != actual:
        problems.append("flatbuffer SHA-256 differs (weights, graph or standard metadata changed)")
    files = record.get("files") or {}
    if not isinstance(files, dict):
        raise ModelError(f"{name}: unusable embedded metadata: 'integrity.files' is not an object")
    for member, digest in sorted(files.items()):
        try:
            blob = arc.read(member) if arc is not None else None
        except ModelError as exc:  # damaged in place (CRC): changed as surely as a new hash
            problems.append(f"{member} is damaged ({str(exc).rsplit('(', 1)[-1].rstrip(')')})")
            continue
        if blob is None:
            problems.append(f"{member} is missing")
        elif hashlib.sha256(blob).hexdigest() != digest:
            problems.append(f"{member} differs")
    status = Status.MODIFIED if problems else Status.INTACT
    return IntegrityReport(status, actual, record["flatbuffer_sha256"], problems)


def verify(path: str | Path) -> IntegrityReport:
    """`check` for a model file; ModelError when it cannot be read."""
    return check(_metadata.read_model_file(path), str(path))
