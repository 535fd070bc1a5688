"""A bounds check of a TFLite flatbuffer's main structure, in pure Python.

tflite-runtime 2.14 builds its interpreter without running the flatbuffer verifier: a truncated
`.tflite` file reads past the end of its buffer and kills the process with a segmentation fault
instead of raising. Checking that every table and vector the interpreter walks first lies inside
the data turns those files into a `ModelError`. Not a full verifier: the interpreter packages
that have one (LiteRT, tf.lite) still run theirs.

Layout reminders (flatbuffers): the file starts with a uint32 offset to the root table; a table
starts with an int32 back-offset to its vtable (uint16 vtable size, uint16 table size, one uint16
field offset per field, 0 = absent); reference fields hold a uint32 offset relative to themselves;
a vector is a uint32 length followed by its elements.
"""
from __future__ import annotations

import struct

from .errors import ModelError

# Field numbers in the TFLite schema (schema.fbs).
_MODEL_OPERATOR_CODES, _MODEL_SUBGRAPHS, _MODEL_BUFFERS = 1, 2, 4
_SUBGRAPH_TENSORS, _SUBGRAPH_INPUTS, _SUBGRAPH_OUTPUTS, _SUBGRAPH_OPERATORS = 0, 1, 2, 3
_BUFFER_DATA, _BUFFER_OFFSET, _BUFFER_SIZE = 0, 1, 2
_TENSOR_SHAPE, _TENSOR_SHAPE_SIGNATURE = 0, 7

# A tensor of more elements than this is refused before any interpreter allocates it: 2**28
# float32 values are 1 GiB, more than a Raspberry Pi has to spare (a 60000x60000 input was seen).
MAX_TENSOR_ELEMENTS = 2**28
MAX_RANK = 8


class _Bad(Exception):
    pass


class _Reader:
    def __init__(self, data: bytes) -> None:
        self.data, self.size = data, len(data)

    def u32(self, pos: int) -> int:
        if pos < 0 or pos + 4 > self.size:
            raise _Bad(f"offset {pos} beyond the end")
        return struct.unpack_from("<I", self.data, pos)[0]

    def table(self, pos: int) -> tuple[int, int]:
        """(table position, vtable position) after checking both lie inside the data."""
        if pos < 0 or pos + 4 > self.size:
            raise _Bad(f"table at {pos} beyond the end")
        vtable = pos - struct.unpack_from("<i", self.data, pos)[0]
        if vtable < 0 or vtable + 4 > self.size:
            raise _Bad(f"vtable at {vtable} beyond the end")
        vsize, tsize = struct.unpack_from("<HH", self.data, vtable)
        if vtable + vsize > self.size or pos + tsize > self.size or vsize < 4:
            raise _Bad("table beyond the end")
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
            raise _Bad(f"vector of {n} elements beyond the end")
        return start + 4, n

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
    r = _Reader(data)
    try:
        model = r.table(r.u32(0))
        subgraphs = r.tables(model, _MODEL_SUBGRAPHS)
        if not subgraphs:
            raise _Bad("no subgraph")
        r.tables(model, _MODEL_OPERATOR_CODES)
        for sub in subgraphs:
            for tensor in r.tables(sub, _SUBGRAPH_TENSORS):
                _check_shape(r, tensor)
            r.tables(sub, _SUBGRAPH_OPERATORS)
            r.vector(sub, _SUBGRAPH_INPUTS)
            r.vector(sub, _SUBGRAPH_OUTPUTS)
        for buf in r.tables(model, _MODEL_BUFFERS):
            r.vector(buf, _BUFFER_DATA, elem=1)
            at_off, at_size = r.field(buf, _BUFFER_OFFSET), r.field(buf, _BUFFER_SIZE)
            if at_off is not None and at_size is not None:
                # Models over 2 GB keep tensor data after the flatbuffer, at (offset, size).
                off, size = struct.unpack_from("<QQ", data[at_off : at_off + 8] + data[at_size : at_size + 8])
                if off > 1 and off + size > len(data):
                    raise _Bad("tensor data beyond the end")
    except (_Bad, struct.error) as exc:
        raise ModelError(f"{name}: corrupt or truncated TFLite model ({exc})") from None


def _check_shape(r: _Reader, tensor: tuple[int, int]) -> None:
    for index in (_TENSOR_SHAPE, _TENSOR_SHAPE_SIGNATURE):
        shape = r.ints(tensor, index)
        if shape is None:
            continue
        if len(shape) > MAX_RANK or any(d < -1 for d in shape):
            raise _Bad(f"impossible tensor shape {tuple(shape)}")
        elements = 1
        for d in shape:
            elements *= max(d, 1)
        if elements > MAX_TENSOR_ELEMENTS:
            raise _Bad(f"tensor shape {tuple(shape)} is absurdly large ({elements:,} elements, limit "
                       f"{MAX_TENSOR_ELEMENTS:,})")
