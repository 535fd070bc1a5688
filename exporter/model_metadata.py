"""Writing the standard TFLite Model Metadata that MediaPipe Tasks, the TFLite Task Library and
Android Studio's model binding read, beside our own JSON, into one `.tflite` file.

No maintained writer works here (mediapipe's metadata_writers import a native module its wheel
lacks; tflite-support has no wheels for Python 3.12+ or aarch64), so the `ModelMetadata` table is
built with the `flatbuffers` package from the published schema (metadata_schema.fbs, file
identifier "M001", field numbers below), and put into the model the way TFLite Support's
populator does: a new buffer holding it, named by a `Metadata` entry "TFLITE_METADATA". The
associated files (`labels.txt` as TENSOR_AXIS_LABELS, our `edge_metadata.json`) go in the ZIP
appended by `edge_runtime.modelfile.metadata.embed`, which also records the flatbuffer's SHA-256.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from edge_runtime.errors import ModelError
from edge_runtime.modelfile import metadata

METADATA_NAME = "TFLITE_METADATA"
# Fields used here all exist since metadata schema 1.0.0: the oldest parser reads them.
MIN_PARSER_VERSION = "1.0.0"
LABELS_FILE = metadata.LABELS_FILE

# Enum values and table field numbers of metadata_schema.fbs.
FEATURE_PROPERTIES, IMAGE_PROPERTIES = 1, 2  # union ContentProperties
NORMALIZATION_OPTIONS = 1  # union ProcessUnitOptions
RGB = 1  # ColorSpaceType
UNKNOWN_FILE, TENSOR_AXIS_LABELS = 0, 2  # AssociatedFileType


@dataclass(frozen=True)
class ModelInfo:
    """The descriptive fields of the standard metadata; empty ones are left out."""

    name: str = ""
    description: str = ""
    version: str = ""
    author: str = ""
    license: str = ""


def metadata_buffer(
    info: ModelInfo, labels: list[str], width: int, height: int, input_dtype: str
) -> bytes:
    """The `ModelMetadata` flatbuffer (identifier M001) describing our classifier."""
    import flatbuffers  # the train extra: `edge-export --help` works without it

    b = flatbuffers.Builder(1024)

    def string(s: str) -> int | None:
        return b.CreateString(s) if s else None

    def table(fields: list[tuple[str, int, object]]) -> int:
        """A table from (kind, slot, value) with kind "ref" (offset), "u8", "u32"; None skipped."""
        made = [(k, slot, v) for k, slot, v in fields if v is not None]
        b.StartObject(max((slot for _, slot, _ in fields), default=-1) + 1)
        for kind, slot, value in made:
            if kind == "ref":
                b.PrependUOffsetTRelativeSlot(slot, value, 0)
            elif kind == "u8":
                b.PrependUint8Slot(slot, value, 0)
            else:
                b.PrependUint32Slot(slot, value, 0)
        return b.EndObject()

    def refs(offsets: list[int]) -> int:
        b.StartVector(4, len(offsets), 4)
        for off in reversed(offsets):
            b.PrependUOffsetTRelative(off)
        return b.EndVector()

    def floats(values: list[float]) -> int:
        b.StartVector(4, len(values), 4)
        for v in reversed(values):
            b.PrependFloat32(v)
        return b.EndVector()

    def associated_file(name: str, description: str, kind: int) -> int:
        return table([("ref", 0, string(name)), ("ref", 1, string(description)), ("u8", 2, kind)])

    # Input: an RGB image, 0-255. The rescaling is a layer inside the graph, so the consumer
    # normalises with mean 0 and std 1 (uint8 models take the raw pixel: scale 1, zero point 0).
    size = table([("u32", 0, width), ("u32", 1, height)])
    image_props = table([("u8", 0, RGB), ("ref", 1, size)])
    content_in = table([("u8", 0, IMAGE_PROPERTIES), ("ref", 1, image_props)])
    norm = table([("ref", 0, floats([0.0])), ("ref", 1, floats([1.0]))])
    unit = table([("u8", 0, NORMALIZATION_OPTIONS), ("ref", 1, norm)])
    stats_in = table([("ref", 0, floats([255.0])), ("ref", 1, floats([0.0]))])
    tensor_in = table(
        [
            ("ref", 0, string("image")),
            (
                "ref",
                1,
                string(
                    f"RGB image, {width}x{height}, {input_dtype} pixel values 0-255 (the model normalises "
                    "them itself: mean 0, std 1)"
                ),
            ),
            ("ref", 3, content_in),
            ("ref", 4, refs([unit])),
            ("ref", 5, stats_in),
        ]
    )
    # Output: one independent probability per label (sigmoid, multi-label: never softmax).
    labels_file = associated_file(
        LABELS_FILE, "Label names, one a line, in score order", TENSOR_AXIS_LABELS
    )
    content_out = table([("u8", 0, FEATURE_PROPERTIES), ("ref", 1, table([]))])
    stats_out = table([("ref", 0, floats([1.0])), ("ref", 1, floats([0.0]))])
    tensor_out = table(
        [
            ("ref", 0, string("probability")),
            (
                "ref",
                1,
                string(
                    f"Independent probability of each of {len(labels)} labels (sigmoid, multi-label). "
                    f"Each label has its own decision threshold, in {metadata.MEMBER}."
                ),
            ),
            ("ref", 3, content_out),
            ("ref", 5, stats_out),
            ("ref", 6, refs([labels_file])),
        ]
    )
    subgraph = table([("ref", 2, refs([tensor_in])), ("ref", 3, refs([tensor_out]))])
    ours = associated_file(
        metadata.MEMBER,
        "edge-multilabel metadata: per-label thresholds, preprocessing, "
        "training and parity summaries, SHA-256 of the flatbuffer",
        UNKNOWN_FILE,
    )
    name, description, version = string(info.name), string(info.description), string(info.version)
    author, license_, parser = string(info.author), string(info.license), string(MIN_PARSER_VERSION)
    root = table(
        [
            ("ref", 0, name),
            ("ref", 1, description),
            ("ref", 2, version),
            ("ref", 3, refs([subgraph])),
            ("ref", 4, author),
            ("ref", 5, license_),
            ("ref", 6, refs([ours])),
            ("ref", 7, parser),
        ]
    )
    b.Finish(root, file_identifier=b"M001")
    return bytes(b.Output())


# Field numbers of the TFLite model schema (schema.fbs) that `populate` reads or writes. The
# schema only ever appends fields, so these numbers are fixed for good.
MODEL_VERSION, MODEL_BUFFERS, MODEL_METADATA = 0, 4, 6
MODEL_REFERENCES = (1, 2, 3, 4, 5, 6, 7)  # operator_codes .. signature_defs: all offsets
BUFFER_DATA, BUFFER_OFFSET = 0, 1
ENTRY_NAME = 0  # Metadata.name; Metadata.buffer (field 1) follows it in the table
DATA_ALIGN = 16  # schema: Buffer.data is `force_align: 16`, as the converter writes it


def populate(flat: bytes, meta_buffer: bytes) -> bytes:
    """`flat` (a TFLite flatbuffer) with `meta_buffer` as its TFLITE_METADATA (replacing any).

    No schema library re-packs the model: TensorFlow's generated one is internal to TensorFlow
    (and its `Pack` aligned buffer data to 1 byte), the `tflite` package only reads. Instead the
    converter's bytes stay exactly as they are, behind a short prefix: a new root `Model` table
    whose fields point into them, except `buffers` and `metadata`, two new vectors listing the
    old entries plus one new buffer (our metadata, its data on 16 bytes as the schema's
    `force_align` asks and MediaPipe's verifier checks) and one new `Metadata` entry naming it.
    Flatbuffer offsets are relative and point forward, so the old content stays valid where it
    is; the prefix is a multiple of 16 bytes, so every alignment the converter gave keeps. The
    old root table is left as a few unreferenced bytes. Depends only on the flatbuffer format
    and the schema's field numbers above, which the schema never renumbers; a Model field this
    writer does not know is refused rather than dropped.
    """
    from edge_runtime.modelfile.flatbuffer import Malformed, Reader

    old = metadata.strip(flat)
    r = Reader(old)
    try:
        root = r.table(r.u32(0))
        vsize = struct.unpack_from("<H", old, root[1])[0]
        present = [i for i in range((vsize - 4) // 2) if r.field(root, i) is not None]
        unknown = [i for i in present if i != MODEL_VERSION and i not in MODEL_REFERENCES]
        if unknown:
            raise ModelError(
                f"the converted model has Model fields {unknown} this writer does not know "
                "(a newer TFLite schema): cannot add the standard metadata"
            )
        refs = {i: _target(r, root, i) for i in present if i in MODEL_REFERENCES}
        buffers = [pos for pos, _ in r.tables(root, MODEL_BUFFERS)]
        if any(r.scalar(b, BUFFER_OFFSET, "<Q") > 1 for b in r.tables(root, MODEL_BUFFERS)):
            raise ModelError("models over 2 GB (buffers outside the flatbuffer) are not supported")
        kept = [
            pos
            for pos, vt in r.tables(root, MODEL_METADATA)
            if r.string((pos, vt), ENTRY_NAME) != METADATA_NAME.encode()
        ]
        version = r.scalar(root, MODEL_VERSION)
    except Malformed as exc:
        raise ModelError(f"not a TFLite flatbuffer: {exc}") from None
    w = _Prefix()
    w.u32(0)  # the root offset, patched below
    w.raw(b"TFL3")
    fields = sorted(set(present) | {MODEL_BUFFERS, MODEL_METADATA})
    n_slots = max(fields) + 1
    vtable = w.pos
    w.u16(4 + 2 * n_slots)
    w.u16(4 + 4 * len(fields))
    for slot in range(n_slots):
        w.u16(4 + 4 * fields.index(slot) if slot in fields else 0)
    w.align(4)
    table = w.pos
    w.patch_u32(0, table)
    w.i32(table - vtable)
    slots = {}
    for slot in fields:
        slots[slot] = w.pos
        w.u32(version if slot == MODEL_VERSION else 0)
    for slot, target in refs.items():
        if slot not in (MODEL_BUFFERS, MODEL_METADATA):
            w.ref_old(slots[slot], target)
    w.ref_new(slots[MODEL_BUFFERS], w.pos)
    new_buffer = w.table_refs(buffers)
    w.ref_new(slots[MODEL_METADATA], w.pos)
    new_entry = w.table_refs(kept)
    # The new Buffer: one field, `data`, whose bytes start on a 16-byte boundary.
    w.ref_new(new_buffer, w.table([4]))
    data_ref = w.pos - 4
    w.align(DATA_ALIGN, plus=4)
    w.ref_new(data_ref, w.pos)
    w.u32(len(meta_buffer))
    w.raw(meta_buffer)
    # The new Metadata entry: `name`, then `buffer` (the index of the buffer just added).
    w.align(4)
    w.ref_new(new_entry, w.table([4, 8]))
    name_ref, index_at = w.pos - 8, w.pos - 4
    w.patch_u32(index_at, len(buffers))
    w.align(4)
    w.ref_new(name_ref, w.pos)
    name = METADATA_NAME.encode()
    w.u32(len(name))
    w.raw(name + b"\0")
    return w.finish(old, DATA_ALIGN)


def _target(r, table: tuple[int, int], index: int) -> int:
    """The position a reference field of `table` points at (in the old bytes)."""
    at = r.field(table, index)
    return at + r.u32(at)


class _Prefix:
    """The bytes put in front of an unchanged flatbuffer, written front to back; references
    into the old bytes are patched once the prefix length (where the old bytes start) is known."""

    def __init__(self) -> None:
        self.buf = bytearray()
        self.to_old: list[tuple[int, int]] = []  # (position of a uoffset, target in the old bytes)

    @property
    def pos(self) -> int:
        return len(self.buf)

    def raw(self, data: bytes) -> None:
        self.buf += data

    def u16(self, v: int) -> None:
        self.buf += struct.pack("<H", v)

    def u32(self, v: int) -> None:
        self.buf += struct.pack("<I", v)

    def i32(self, v: int) -> None:
        self.buf += struct.pack("<i", v)

    def align(self, n: int, plus: int = 0) -> None:
        """Pad with zeros until (position + plus) is a multiple of n."""
        self.buf += bytes(-(self.pos + plus) % n)

    def patch_u32(self, at: int, v: int) -> None:
        struct.pack_into("<I", self.buf, at, v)

    def ref_new(self, at: int, target: int) -> None:
        self.patch_u32(at, target - at)

    def ref_old(self, at: int, target: int) -> None:
        self.to_old.append((at, target))

    def table_refs(self, old_tables: list[int]) -> int:
        """A vector of references to `old_tables` and one more; returns the last slot's position."""
        self.align(4)
        self.u32(len(old_tables) + 1)
        for target in old_tables:
            self.ref_old(self.pos, target)
            self.u32(0)
        self.u32(0)
        return self.pos - 4

    def table(self, field_offsets: list[int]) -> int:
        """A vtable, then a table of 4-byte fields (zeros, to be patched) at `field_offsets`;
        returns the table's position (its fields are the last len(field_offsets) words)."""
        self.align(2)
        vtable = self.pos
        self.u16(4 + 2 * len(field_offsets))
        self.u16(4 + 4 * len(field_offsets))
        for off in field_offsets:
            self.u16(off)
        self.align(4)
        table = self.pos
        self.i32(table - vtable)
        for _ in field_offsets:
            self.u32(0)
        return table

    def finish(self, old: bytes, align: int) -> bytes:
        self.align(align)
        start = self.pos
        for at, target in self.to_old:
            self.patch_u32(at, start + target - at)
        return bytes(self.buf) + old


def write_model(flat: bytes, edge_metadata: dict, info: ModelInfo) -> bytes:
    """One complete model file: the flatbuffer with standard metadata, then the archive of
    `labels.txt` and our JSON (with the SHA-256 of that flatbuffer)."""
    labels = list(edge_metadata["labels"])
    if any("\n" in label or "\r" in label for label in labels):
        raise ModelError("a label contains a line break: it cannot be written to labels.txt")
    size = edge_metadata.get("input") or {}
    buffer = metadata_buffer(
        info, labels, int(size["width"]), int(size["height"]), str(size.get("dtype", "uint8"))
    )
    labels_txt = "".join(f"{label}\n" for label in labels).encode("utf-8")
    return metadata.embed(populate(flat, buffer), edge_metadata, files={LABELS_FILE: labels_txt})
