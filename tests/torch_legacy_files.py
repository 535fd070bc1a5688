"""Legacy-format torch state dict files written without torch, for the reader's tests.

The state dict's pickle is assembled opcode by opcode (protocol 2, as torch writes it), so a test
can put anything where a tensor belongs: another global, a bad persistent id, a huge storage.
"""

from __future__ import annotations

import pickle
import struct

import numpy as np

MAGIC = 0x1950A86A20F9469CFC6C
SYS_INFO = {
    "protocol_version": 1001,
    "little_endian": True,
    "type_sizes": {"short": 2, "int": 4, "long": 4},
}
STORAGE = {np.dtype("float32"): "FloatStorage", np.dtype("int64"): "LongStorage"}


def glob(module: str, name: str) -> bytes:
    return b"c" + module.encode() + b"\n" + name.encode() + b"\n"


def text(s: str) -> bytes:
    b = s.encode()
    return b"X" + struct.pack("<I", len(b)) + b


def integer(i: int) -> bytes:
    return pickle.dumps(i, protocol=2)[2:-1]  # BININT1/2, BININT or LONG1, as pickle picks


def tup(*items: bytes) -> bytes:
    return b"(" + b"".join(items) + b"t"


def call(func: bytes, *args: bytes) -> bytes:
    """func(*args) through REDUCE: what a pickle does to rebuild anything."""
    return func + tup(*args) + b"R"


def ordered_dict() -> bytes:
    return glob("collections", "OrderedDict") + b")R"


def storage_pid(key: str, numel: int, storage: str = "FloatStorage") -> bytes:
    return (
        tup(text("storage"), glob("torch", storage), text(key), text("cpu"), integer(numel), b"N")
        + b"Q"
    )


def tensor(key: str, numel: int, shape, stride, offset: int = 0, storage="FloatStorage") -> bytes:
    return call(
        glob("torch._utils", "_rebuild_tensor_v2"),
        storage_pid(key, numel, storage),
        integer(offset),
        tup(*(integer(s) for s in shape)),
        tup(*(integer(s) for s in stride)),
        b"\x89",  # False: requires_grad
        ordered_dict(),  # backward hooks
    )


def state_pickle(entries: dict[str, bytes]) -> bytes:
    """An OrderedDict pickle whose values are the given opcode fragments."""
    items = b"".join(text(k) + v for k, v in entries.items())
    return b"\x80\x02" + ordered_dict() + b"(" + items + b"u."


def headers() -> bytes:
    return b"".join(pickle.dumps(o, protocol=2) for o in (MAGIC, 1001, SYS_INFO))


def storages_part(storages: dict[str, np.ndarray]) -> bytes:
    """The sorted key list, then each storage as int64 count + little-endian data."""
    keys = sorted(storages)
    out = pickle.dumps(keys, protocol=2)
    for k in keys:
        a = np.ascontiguousarray(storages[k])
        out += struct.pack("<q", a.size) + a.astype(a.dtype.newbyteorder("<")).tobytes()
    return out


def legacy_file(arrays: dict[str, np.ndarray]) -> bytes:
    """A well-formed file holding `arrays` (float32/int64), one storage per tensor."""
    entries, storages = {}, {}
    for i, (name, a) in enumerate(arrays.items()):
        key = str(1000 + i)
        a = np.ascontiguousarray(a)
        stride = tuple(s // a.itemsize for s in a.strides)
        entries[name] = tensor(key, a.size, a.shape, stride, storage=STORAGE[a.dtype])
        storages[key] = a.reshape(-1)
    return headers() + state_pickle(entries) + storages_part(storages)
