"""Reading the standard TFLite Model Metadata (the `TFLITE_METADATA` buffer), without TensorFlow.

The metadata is a second flatbuffer (schema metadata_schema.fbs, identifier "M001") stored in one
of the model's buffers. It is read with the same bounds-checked reader as the model itself, and
its size is capped, so a hostile file cannot make the device read past its data or allocate much.
The fields this toolkit writes are returned as plain dicts; `edge-infer info` shows them and a
model from elsewhere (MediaPipe Model Maker, TFLite Support) gets its label names from them.
"""

from __future__ import annotations

from ..errors import ModelError
from .flatbuffer import Malformed, Reader

NAME = b"TFLITE_METADATA"
IDENTIFIER = b"M001"
MAX_BYTES = 1 << 20  # ours is ~1 KB; a label map is an associated file, not in here
MAX_STRING = 4096

_FILE_TYPES = {
    0: "UNKNOWN",
    1: "DESCRIPTIONS",
    2: "TENSOR_AXIS_LABELS",
    3: "TENSOR_VALUE_LABELS",
    4: "TENSOR_AXIS_SCORE_CALIBRATION",
    5: "VOCABULARY",
    6: "SCANN_INDEX_FILE",
}
_CONTENT = {1: "feature", 2: "image", 3: "bounding_box", 4: "audio"}
_COLOR = {0: "UNKNOWN", 1: "RGB", 2: "GRAYSCALE"}
_TRANSFORMS = {0: "IDENTITY", 1: "LOG", 2: "INVERSE_LOGISTIC"}
_UNITS = {
    1: "normalization",
    2: "score_calibration",
    3: "score_thresholding",
    4: "bert_tokenizer",
    5: "sentencepiece_tokenizer",
    6: "regex_tokenizer",
}


def buffer(data: bytes, name: str = "<model>") -> bytes | None:
    """The raw TFLITE_METADATA flatbuffer of a model, or None when it has none."""
    r = Reader(data)
    try:
        model = r.table(r.u32(0))
        index = None
        for entry in r.tables(model, 6):  # Model.metadata
            if r.string(entry, 0) == NAME:
                index = r.scalar(entry, 1)
        if index is None:
            return None
        buffers = r.tables(model, 4)
        if index >= len(buffers):
            raise Malformed("metadata buffer index out of range")
        vec = r.vector(buffers[index], 0, elem=1)
    except (Malformed, ValueError) as exc:
        raise ModelError(f"{name}: corrupt TFLite model ({exc})") from None
    if vec is None:
        return None
    first, n = vec
    if n > MAX_BYTES:
        raise ModelError(
            f"{name}: standard metadata is {n:,} bytes, over the {MAX_BYTES:,}-byte limit"
        )
    return bytes(data[first : first + n])


def read(data: bytes, name: str = "<model>") -> dict | None:
    """The standard metadata as a dict (see `parse`), or None when the model has none."""
    raw = buffer(data, name)
    return None if raw is None else parse(raw, name)


def parse(raw: bytes, name: str = "<model>") -> dict:
    """A `ModelMetadata` flatbuffer as a dict of the fields this toolkit writes and reads."""
    if raw[4:8] != IDENTIFIER:
        raise ModelError(f"{name}: standard metadata has no '{IDENTIFIER.decode()}' identifier")
    r = Reader(raw)
    try:
        root = r.table(r.u32(0))
        return {
            "name": _str(r, root, 0),
            "description": _str(r, root, 1),
            "version": _str(r, root, 2),
            "author": _str(r, root, 4),
            "license": _str(r, root, 5),
            "min_parser_version": _str(r, root, 7),
            "associated_files": _files(r, root, 6),
            "subgraphs": [
                {
                    "inputs": [_tensor(r, t) for t in r.tables(sub, 2)],
                    "outputs": [_tensor(r, t) for t in r.tables(sub, 3)],
                    "associated_files": _files(r, sub, 4),
                }
                for sub in r.tables(root, 3)
            ],
        }
    except (Malformed, ValueError) as exc:
        raise ModelError(f"{name}: corrupt standard metadata ({exc})") from None


def labels_file(std: dict | None) -> str | None:
    """Name of the first output's TENSOR_AXIS_LABELS file, if the metadata names one."""
    for sub in (std or {}).get("subgraphs", [])[:1]:
        for out in sub["outputs"][:1]:
            for f in out["associated_files"]:
                if f["type"] == "TENSOR_AXIS_LABELS" and f["name"]:
                    return f["name"]
    return None


def score_calibration_file(std: dict | None) -> str | None:
    """Name of the first output's TENSOR_AXIS_SCORE_CALIBRATION file, when the output also has
    ScoreCalibrationOptions (what MediaPipe and the Task Library need to apply it)."""
    for sub in (std or {}).get("subgraphs", [])[:1]:
        for out in sub["outputs"][:1]:
            if not any(u["type"] == "score_calibration" for u in out["process_units"]):
                return None
            for f in out["associated_files"]:
                if f["type"] == "TENSOR_AXIS_SCORE_CALIBRATION" and f["name"]:
                    return f["name"]
    return None


def describe(std: dict | None) -> list[str]:
    """Lines for `edge-infer info`: what a consumer of the standard metadata sees."""
    if std is None:
        return ["standard    none (MediaPipe and the TFLite Task Library see no label names)"]
    fields = [f"{k}={std[k]}" for k in ("name", "version", "author", "license") if std.get(k)]
    lines = [f"standard    TFLite Model Metadata: {', '.join(fields) or '(no name)'}"]
    for sub in std["subgraphs"][:1]:
        for role, tensors in (("input", sub["inputs"]), ("output", sub["outputs"])):
            for t in tensors:
                content = t["content"] or {}
                desc = [content.get("type") or "-"]
                if content.get("color_space"):
                    desc.append(content["color_space"])
                if content.get("default_size"):
                    desc.append("x".join(str(v) for v in content["default_size"]))
                desc += [_unit(u) for u in t["process_units"]]
                files = ", ".join(f"{f['name']} ({f['type']})" for f in t["associated_files"])
                lines.append(
                    f"  {role:<9} {t['name']}: {', '.join(desc)}"
                    + (f"; files {files}" if files else "")
                )
    return lines


def _unit(u: dict) -> str:
    if u["type"] == "normalization":
        return f"mean {u['mean']} std {u['std']}"
    if u["type"] == "score_calibration":
        return (
            f"score calibration {u.get('score_transformation', '?')} "
            f"(default score {u.get('default_score', 0.0):g})"
        )
    if u["type"] == "score_thresholding":
        return f"score threshold {u.get('global_score_threshold', 0.0):g}"
    return u["type"]


def _str(r: Reader, table, index: int) -> str | None:
    s = r.string(table, index)
    return None if s is None else s[:MAX_STRING].decode("utf-8", "replace")


def _floats(r: Reader, table, index: int) -> list[float] | None:
    import struct

    vec = r.vector(table, index)
    if vec is None:
        return None
    first, n = vec
    return [float(v) for v in struct.unpack_from(f"<{n}f", r.data, first)]


def _files(r: Reader, table, index: int) -> list[dict]:
    return [
        {
            "name": _str(r, f, 0),
            "description": _str(r, f, 1),
            "type": _FILE_TYPES.get(r.scalar(f, 2, "<b"), "UNKNOWN"),
            "locale": _str(r, f, 3),
        }
        for f in r.tables(table, index)
    ]


def _tensor(r: Reader, t) -> dict:
    out: dict = {
        "name": _str(r, t, 0),
        "description": _str(r, t, 1),
        "content": None,
        "process_units": [],
        "stats": None,
        "associated_files": _files(r, t, 6),
    }
    content = r.table_field(t, 3)
    if content is not None:
        kind = r.scalar(content, 0, "<B")
        c: dict = {"type": _CONTENT.get(kind, f"unknown({kind})")}
        props = r.table_field(content, 1)
        if kind == 2 and props is not None:
            c["color_space"] = _COLOR.get(r.scalar(props, 0, "<b"), "UNKNOWN")
            size = r.table_field(props, 1)
            if size is not None:
                c["default_size"] = [r.scalar(size, 0), r.scalar(size, 1)]  # width, height
        out["content"] = c
    for unit in r.tables(t, 4):
        kind = r.scalar(unit, 0, "<B")
        u: dict = {"type": _UNITS.get(kind, f"unknown({kind})")}
        options = r.table_field(unit, 1)
        if kind == 1 and options is not None:
            u["mean"], u["std"] = _floats(r, options, 0), _floats(r, options, 1)
        elif kind == 2 and options is not None:
            transform = r.scalar(options, 0, "<b")
            u["score_transformation"] = _TRANSFORMS.get(transform, f"unknown({transform})")
            u["default_score"] = r.scalar(options, 1, "<f", 0.0)
        elif kind == 3 and options is not None:
            u["global_score_threshold"] = r.scalar(options, 0, "<f", 0.0)
        out["process_units"].append(u)
    stats = r.table_field(t, 5)
    if stats is not None:
        out["stats"] = {"max": _floats(r, stats, 0), "min": _floats(r, stats, 1)}
    return out
