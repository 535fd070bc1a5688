"""A bounds check of a TFLite flatbuffer's main structure, in pure Python.

tflite-runtime 2.14 builds its interpreter without running the flatbuffer verifier: a truncated
`.tflite` file, or one byte changed in an offset (seen: a signature's tensor-name offset), reads
past the end of its buffer and kills the process with a segmentation fault instead of raising.
Checking that every table, vector and string the interpreter walks lies inside the data, and that
every index (tensor, buffer, operator code, subgraph) points at something that exists, turns those
files into a `ModelError`. Not a full verifier (operator options' contents and sparsity are not
walked): the interpreter packages that have one (LiteRT, tf.lite) still run theirs.

Layout reminders (flatbuffers): the file starts with a uint32 offset to the root table; a table
starts with an int32 back-offset to its vtable (uint16 vtable size, uint16 table size, one uint16
field offset per field, 0 = absent); reference fields hold a uint32 offset relative to themselves;
a vector is a uint32 length followed by its elements.
"""

from __future__ import annotations

import struct

from ..errors import ModelError

# Field numbers in the TFLite schema (schema.fbs).
_MODEL_OPERATOR_CODES, _MODEL_SUBGRAPHS, _MODEL_DESCRIPTION, _MODEL_BUFFERS = 1, 2, 3, 4
_MODEL_METADATA_BUFFER, _MODEL_METADATA, _MODEL_SIGNATURE_DEFS = 5, 6, 7
_SUBGRAPH_TENSORS, _SUBGRAPH_INPUTS, _SUBGRAPH_OUTPUTS, _SUBGRAPH_OPERATORS, _SUBGRAPH_NAME = (
    0,
    1,
    2,
    3,
    4,
)
_BUFFER_DATA, _BUFFER_OFFSET, _BUFFER_SIZE = 0, 1, 2
_TENSOR_SHAPE, _TENSOR_BUFFER, _TENSOR_NAME, _TENSOR_QUANTIZATION = 0, 2, 3, 4
_TENSOR_SPARSITY, _TENSOR_SHAPE_SIGNATURE = 6, 7
_QUANT_MIN, _QUANT_MAX, _QUANT_SCALE, _QUANT_ZERO_POINT, _QUANT_DETAILS = 0, 1, 2, 3, 5
_OP_OPCODE_INDEX, _OP_INPUTS, _OP_OUTPUTS, _OP_BUILTIN_OPTIONS, _OP_CUSTOM_OPTIONS = 0, 1, 2, 4, 5
_OP_MUTATING_INPUTS, _OP_INTERMEDIATES, _OP_BUILTIN_OPTIONS_2 = 7, 8, 12
_OPCODE_CUSTOM_CODE = 1
_METADATA_NAME, _METADATA_BUFFER = 0, 1
_SIGNATURE_INPUTS, _SIGNATURE_OUTPUTS, _SIGNATURE_KEY, _SIGNATURE_SUBGRAPH = 0, 1, 2, 4
_TENSORMAP_NAME, _TENSORMAP_TENSOR = 0, 1

# A tensor of more elements than this is refused before any interpreter allocates it: 2**28
# float32 values are 1 GiB, more than a Raspberry Pi has to spare (a 60000x60000 input was seen).
MAX_TENSOR_ELEMENTS = 2**28
MAX_RANK = 8


class Malformed(Exception):
    """An offset, size or index of the flatbuffer points outside it (callers turn it into ModelError)."""


class Reader:
    """Bounds-checked little-endian reads of flatbuffer tables, vectors and strings."""

    def __init__(self, data: bytes) -> None:
        self.data, self.size = data, len(data)

    def u32(self, pos: int) -> int:
        if pos < 0 or pos + 4 > self.size:
            raise Malformed(f"offset {pos} beyond the end")
        return struct.unpack_from("<I", self.data, pos)[0]

    def table(self, pos: int) -> tuple[int, int]:
        """(table position, vtable position) after checking both lie inside the data."""
        if pos < 0 or pos + 4 > self.size:
            raise Malformed(f"table at {pos} beyond the end")
        vtable = pos - struct.unpack_from("<i", self.data, pos)[0]
        if vtable < 0 or vtable + 4 > self.size:
            raise Malformed(f"vtable at {vtable} beyond the end")
        vsize, tsize = struct.unpack_from("<HH", self.data, vtable)
        if vtable + vsize > self.size or pos + tsize > self.size or vsize < 4:
            raise Malformed("table beyond the end")
        return pos, vtable

    def field(self, table: tuple[int, int], index: int) -> int | None:
        """Position of field `index` of a table, or None when absent."""
        pos, vtable = table
        vsize = struct.unpack_from("<H", self.data, vtable)[0]
        if 4 + 2 * index + 2 > vsize:
            return None
        off = struct.unpack_from("<H", self.data, vtable + 4 + 2 * index)[0]
        return pos + off if off else None

    def vector(self, table: tuple[int, int], index: int, elem: int = 4) -> tuple[int, int] | None:
        """(first element position, length) of a vector field, checked to fit."""
        at = self.field(table, index)
        if at is None:
            return None
        start = at + self.u32(at)
        n = self.u32(start)
        if start + 4 + n * elem > self.size:
            raise Malformed(f"vector of {n} elements beyond the end")
        return start + 4, n

    def scalar(self, table: tuple[int, int], index: int, fmt: str = "<I", default: int | float = 0):
        """A scalar field (struct format `fmt`), or `default` when absent."""
        at = self.field(table, index)
        if at is None:
            return default
        if at + struct.calcsize(fmt) > self.size:
            raise Malformed(f"field at {at} beyond the end")
        return struct.unpack_from(fmt, self.data, at)[0]

    def string(self, table: tuple[int, int], index: int) -> bytes | None:
        """A string field's bytes, or None when absent."""
        vec = self.vector(table, index, elem=1)
        if vec is None:
            return None
        first, n = vec
        return bytes(self.data[first : first + n])

    def table_field(self, table: tuple[int, int], index: int) -> tuple[int, int] | None:
        """A sub-table field, or None when absent."""
        at = self.field(table, index)
        return None if at is None else self.table(at + self.u32(at))

    def strings(self, table: tuple[int, int], index: int) -> list[bytes]:
        vec = self.vector(table, index)
        if vec is None:
            return []
        first, n = vec
        out = []
        for i in range(n):
            at = first + 4 * i + self.u32(first + 4 * i)
            size = self.u32(at)
            if at + 4 + size > self.size:
                raise Malformed(f"string of {size} bytes beyond the end")
            out.append(bytes(self.data[at + 4 : at + 4 + size]))
        return out

    def ints(self, table: tuple[int, int], index: int) -> list[int] | None:
        """An int32 vector field as a list, or None when absent."""
        vec = self.vector(table, index)
        if vec is None:
            return None
        first, n = vec
        return list(struct.unpack_from(f"<{n}i", self.data, first))

    def tables(self, table: tuple[int, int], index: int) -> list[tuple[int, int]]:
        vec = self.vector(table, index)
        if vec is None:
            return []
        first, n = vec
        return [self.table(first + 4 * i + self.u32(first + 4 * i)) for i in range(n)]


def check_structure(data: bytes, name: str = "<model>") -> None:
    """Raise ModelError if the model's tables and vectors do not fit inside `data`."""
    r = Reader(data)
    try:
        model = r.table(r.u32(0))
        subgraphs = r.tables(model, _MODEL_SUBGRAPHS)
        if not subgraphs:
            raise Malformed("no subgraph")
        buffers = r.tables(model, _MODEL_BUFFERS)
        opcodes = r.tables(model, _MODEL_OPERATOR_CODES)
        for code in opcodes:
            r.string(code, _OPCODE_CUSTOM_CODE)
        r.string(model, _MODEL_DESCRIPTION)
        n_tensors = []
        for sub in subgraphs:
            tensors = r.tables(sub, _SUBGRAPH_TENSORS)
            n_tensors.append(len(tensors))
            r.string(sub, _SUBGRAPH_NAME)
            for tensor in tensors:
                _check_tensor(r, tensor, len(buffers))
            for index in (_SUBGRAPH_INPUTS, _SUBGRAPH_OUTPUTS):
                _indices(r, sub, index, len(tensors), "subgraph input/output")
            for op in r.tables(sub, _SUBGRAPH_OPERATORS):
                _check_operator(r, op, len(tensors), len(opcodes))
        for buf in buffers:
            r.vector(buf, _BUFFER_DATA, elem=1)
            off, size = r.scalar(buf, _BUFFER_OFFSET, "<Q"), r.scalar(buf, _BUFFER_SIZE, "<Q")
            # Models over 2 GB keep tensor data after the flatbuffer, at (offset, size).
            if off > 1 and off + size > len(data):
                raise Malformed("tensor data beyond the end")
        _indices(r, model, _MODEL_METADATA_BUFFER, len(buffers), "metadata buffer")
        for meta in r.tables(model, _MODEL_METADATA):
            r.string(meta, _METADATA_NAME)
            if r.scalar(meta, _METADATA_BUFFER) >= len(buffers):
                raise Malformed("metadata buffer index out of range")
        for sig in r.tables(model, _MODEL_SIGNATURE_DEFS):
            r.string(sig, _SIGNATURE_KEY)
            graph = r.scalar(sig, _SIGNATURE_SUBGRAPH)
            if graph >= len(subgraphs):
                raise Malformed("signature subgraph index out of range")
            for index in (_SIGNATURE_INPUTS, _SIGNATURE_OUTPUTS):
                for tmap in r.tables(sig, index):
                    r.string(tmap, _TENSORMAP_NAME)
                    if r.scalar(tmap, _TENSORMAP_TENSOR) >= n_tensors[graph]:
                        raise Malformed("signature tensor index out of range")
    except (Malformed, struct.error) as exc:
        raise ModelError(f"{name}: corrupt or truncated TFLite model ({exc})") from None


def _indices(
    r: Reader, table: tuple[int, int], index: int, limit: int, what: str, optional: bool = False
) -> None:
    """Check an int32 index vector: every value in [0, limit), or -1 where `optional`."""
    values = r.ints(table, index) or []
    low = -1 if optional else 0
    if any(v < low or v >= limit for v in values):
        raise Malformed(f"{what} index out of range")


def _check_tensor(r: Reader, tensor: tuple[int, int], n_buffers: int) -> None:
    _check_shape(r, tensor)
    if r.scalar(tensor, _TENSOR_BUFFER) >= max(n_buffers, 1):
        raise Malformed("tensor buffer index out of range")
    r.string(tensor, _TENSOR_NAME)
    quant = r.table_field(tensor, _TENSOR_QUANTIZATION)
    if quant is not None:
        for index in (_QUANT_MIN, _QUANT_MAX, _QUANT_SCALE):
            r.vector(quant, index)
        r.vector(quant, _QUANT_ZERO_POINT, elem=8)
        r.table_field(quant, _QUANT_DETAILS)
    r.table_field(tensor, _TENSOR_SPARSITY)


def _check_operator(r: Reader, op: tuple[int, int], n_tensors: int, n_opcodes: int) -> None:
    if r.scalar(op, _OP_OPCODE_INDEX) >= n_opcodes:
        raise Malformed("operator code index out of range")
    for index in (_OP_INPUTS, _OP_OUTPUTS, _OP_INTERMEDIATES):
        _indices(r, op, index, n_tensors, "operator tensor", optional=True)  # -1: an omitted input
    r.vector(op, _OP_CUSTOM_OPTIONS, elem=1)
    r.vector(op, _OP_MUTATING_INPUTS, elem=1)
    for index in (_OP_BUILTIN_OPTIONS, _OP_BUILTIN_OPTIONS_2):
        r.table_field(op, index)


def _check_shape(r: Reader, tensor: tuple[int, int]) -> None:
    for index in (_TENSOR_SHAPE, _TENSOR_SHAPE_SIGNATURE):
        shape = r.ints(tensor, index)
        if shape is None:
            continue
        if len(shape) > MAX_RANK or any(d < -1 for d in shape):
            raise Malformed(f"impossible tensor shape {tuple(shape)}")
        elements = 1
        for d in shape:
            elements *= max(d, 1)
        if elements > MAX_TENSOR_ELEMENTS:
            raise Malformed(
                f"tensor shape {tuple(shape)} is absurdly large ({elements:,} elements, limit "
                f"{MAX_TENSOR_ELEMENTS:,})"
            )
