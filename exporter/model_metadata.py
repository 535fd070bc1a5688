"""Writing the standard TFLite Model Metadata that MediaPipe Tasks, the TFLite Task Library and
Android Studio's model binding read, beside our own JSON, into one `.tflite` file.

No maintained writer works here (mediapipe's metadata_writers import a native module its wheel
lacks; tflite-support has no wheels for Python 3.12+ or aarch64), so the `ModelMetadata` table is
built with the `flatbuffers` package from the published schema (metadata_schema.fbs, file
identifier "M001", field numbers below), and put into the model the way TFLite Support's
populator does: a new buffer holding it, named by a `Metadata` entry "TFLITE_METADATA". The
associated files (`labels.txt` as TENSOR_AXIS_LABELS, our `edge_metadata.json`, and with
`score_calibration` the per-label calibration as TENSOR_AXIS_SCORE_CALIBRATION) go in the ZIP
appended by `edge_runtime.modelfile.metadata.embed`, which also records their SHA-256.
"""

from __future__ import annotations

from dataclasses import dataclass

from edge_runtime.errors import ModelError
from edge_runtime.modelfile import metadata
from edge_runtime.modelfile import score_calibration as calibration

METADATA_NAME = "TFLITE_METADATA"
# Fields used here all exist since metadata schema 1.0.0: the oldest parser reads them.
MIN_PARSER_VERSION = "1.0.0"
LABELS_FILE = metadata.LABELS_FILE

# Enum values and table field numbers of metadata_schema.fbs.
FEATURE_PROPERTIES, IMAGE_PROPERTIES = 1, 2  # union ContentProperties
# union ProcessUnitOptions
NORMALIZATION_OPTIONS, SCORE_CALIBRATION_OPTIONS, SCORE_THRESHOLDING_OPTIONS = 1, 2, 3
RGB = 1  # ColorSpaceType
UNKNOWN_FILE, TENSOR_AXIS_LABELS, TENSOR_AXIS_SCORE_CALIBRATION = 0, 2, 4  # AssociatedFileType
INVERSE_LOGISTIC = 2  # ScoreTransformationType


@dataclass(frozen=True)
class ModelInfo:
    """The descriptive fields of the standard metadata; empty ones are left out."""

    name: str = ""
    description: str = ""
    version: str = ""
    author: str = ""
    license: str = ""


def metadata_buffer(
    info: ModelInfo,
    labels: list[str],
    width: int,
    height: int,
    input_dtype: str,
    *,
    score_calibration: bool = False,
) -> bytes:
    """The `ModelMetadata` flatbuffer (identifier M001) describing our classifier.

    With `score_calibration`, the output also carries the per-label calibration (see
    `edge_runtime.modelfile.score_calibration`) and a global score threshold of 0.5."""
    import flatbuffers  # the train extra: `edge-export --help` works without it

    b = flatbuffers.Builder(1024)

    def string(s: str) -> int | None:
        return b.CreateString(s) if s else None

    def table(fields: list[tuple[str, int, object]]) -> int:
        """A table from (kind, slot, value) with kind "ref" (offset), "u8", "u32", "f32"; None
        skipped. A float equal to the schema's default 0.0 is written anyway (force_defaults)."""
        made = [(k, slot, v) for k, slot, v in fields if v is not None]
        b.StartObject(max((slot for _, slot, _ in fields), default=-1) + 1)
        for kind, slot, value in made:
            if kind == "ref":
                b.PrependUOffsetTRelativeSlot(slot, value, 0)
            elif kind == "u8":
                b.PrependUint8Slot(slot, value, 0)
            elif kind == "f32":
                b.PrependFloat32Slot(slot, value, float("nan"))
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
    out_files = [
        associated_file(LABELS_FILE, "Label names, one a line, in score order", TENSOR_AXIS_LABELS)
    ]
    out_units = None
    description = (
        f"Independent probability of each of {len(labels)} labels (sigmoid, multi-label). "
        f"Each label has its own decision threshold, in {metadata.MEMBER}."
    )
    if score_calibration:
        out_files.append(
            associated_file(
                calibration.FILE,
                "Per-label score calibration (scale,slope,offset,min_score): each label's own "
                "threshold becomes 0.5",
                TENSOR_AXIS_SCORE_CALIBRATION,
            )
        )
        calibrate = table([("u8", 0, INVERSE_LOGISTIC), ("f32", 1, calibration.DEFAULT_SCORE)])
        threshold = table([("f32", 0, calibration.CONSUMER_THRESHOLD)])
        out_units = refs(
            [
                table([("u8", 0, SCORE_CALIBRATION_OPTIONS), ("ref", 1, calibrate)]),
                table([("u8", 0, SCORE_THRESHOLDING_OPTIONS), ("ref", 1, threshold)]),
            ]
        )
        description += (
            f" With the score calibration in {calibration.FILE} applied (MediaPipe and the Task "
            "Library apply it), a label's calibrated score is >= 0.5 exactly when its probability "
            "reaches its threshold, and 0 below it."
        )
    content_out = table([("u8", 0, FEATURE_PROPERTIES), ("ref", 1, table([]))])
    stats_out = table([("ref", 0, floats([1.0])), ("ref", 1, floats([0.0]))])
    tensor_out = table(
        [
            ("ref", 0, string("probability")),
            ("ref", 1, string(description)),
            ("ref", 3, content_out),
            ("ref", 4, out_units),
            ("ref", 5, stats_out),
            ("ref", 6, refs(out_files)),
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


def populate(flat: bytes, meta_buffer: bytes) -> bytes:
    """`flat` (a TFLite flatbuffer) with `meta_buffer` as its TFLITE_METADATA (replacing any)."""
    import flatbuffers
    from tensorflow.lite.python import schema_py_generated as tfl

    model = tfl.ModelT.InitFromObj(tfl.Model.GetRootAs(metadata.strip(flat), 0))
    model.metadata = [
        m for m in (model.metadata or []) if m.name not in (METADATA_NAME, METADATA_NAME.encode())
    ]
    buf = tfl.BufferT()
    buf.data = meta_buffer
    model.buffers.append(buf)
    entry = tfl.MetadataT()
    entry.name, entry.buffer = METADATA_NAME, len(model.buffers) - 1
    model.metadata.append(entry)
    aligned = _aligned_buffer_class(tfl)
    for b in model.buffers:
        b.__class__ = aligned
    builder = flatbuffers.Builder(len(flat) + len(meta_buffer) + 4096)
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    return bytes(builder.Output())


def _aligned_buffer_class(tfl):
    class AlignedBuffer(tfl.BufferT):
        """A Buffer whose data starts on 16 bytes (schema: `force_align: 16`), as the converter
        writes them: the generated Pack aligns to 1, and flatbuffer verifiers (MediaPipe's,
        for the metadata buffer) and SIMD kernels want aligned data."""

        def Pack(self, builder):
            data = None
            if self.data is not None:
                raw = (
                    self.data.tobytes()
                    if hasattr(self.data, "tobytes")
                    else bytes(bytearray(self.data))
                )
                builder.StartVector(1, len(raw), 16)
                builder.head -= len(raw)
                builder.Bytes[builder.head : builder.head + len(raw)] = raw
                data = builder.EndVector()
            tfl.BufferStart(builder)
            if data is not None:
                tfl.BufferAddData(builder, data)
            tfl.BufferAddOffset(builder, self.offset)
            tfl.BufferAddSize(builder, self.size)
            return tfl.BufferEnd(builder)

    return AlignedBuffer


def write_model(
    flat: bytes, edge_metadata: dict, info: ModelInfo, *, score_calibration: bool = False
) -> bytes:
    """One complete model file: the flatbuffer with standard metadata, then the archive of
    `labels.txt` and our JSON (with the SHA-256 of that flatbuffer); with `score_calibration`,
    also the calibration file made from `edge_metadata["thresholds"]`."""
    labels = list(edge_metadata["labels"])
    if any("\n" in label or "\r" in label for label in labels):
        raise ModelError("a label contains a line break: it cannot be written to labels.txt")
    size = edge_metadata.get("input") or {}
    buffer = metadata_buffer(
        info,
        labels,
        int(size["width"]),
        int(size["height"]),
        str(size.get("dtype", "uint8")),
        score_calibration=score_calibration,
    )
    files = {LABELS_FILE: "".join(f"{label}\n" for label in labels).encode("utf-8")}
    if score_calibration:
        text = calibration.file_text(edge_metadata["thresholds"])
        files[calibration.FILE] = text.encode("ascii")
    return metadata.embed(populate(flat, buffer), edge_metadata, files=files)
