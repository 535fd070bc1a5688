"""Read a PyTorch state dict in torch's legacy (pre-zip) format with numpy and the standard library.

A pickle is code: unpickling runs whatever callables it names. This reader never imports torch
and never lets a pickle reach anything but what a state dict of tensors needs:

- globals: `collections.OrderedDict` (as a subclass whose `__setstate__` takes only the
  `_metadata` torch attaches), `torch._utils._rebuild_tensor_v2` (our own function that records
  a tensor's view, checked), and the storage types (`torch.FloatStorage`, ...), which become
  inert markers; any other global is refused before it is looked up;
- persistent ids: only `("storage", <storage type>, key, location, numel[, view])`, checked;
- sizes: the file, the state dict's pickle, the number of tensors, their rank and every storage
  are bounded before anything is allocated, and every tensor's view must lie inside its storage.

Layout (torch.serialization's legacy `_legacy_save`): five pickles (protocol 2) one after the
other - magic number, protocol version 1001, sys info, the state dict, the sorted list of storage
keys - then, per key in that order, an int64 element count and the raw little-endian elements.
Anything unexpected raises `WeightsError`: nothing half-read is returned.
"""

from __future__ import annotations

import io
import os
import pickle
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ...errors import WeightsError

MAGIC_NUMBER = 0x1950A86A20F9469CFC6C
PROTOCOL_VERSION = 1001
MAX_FILE_BYTES = 256 << 20  # EfficientNet-Lite4, the largest of its family, is ~52 MB
MAX_PICKLE_BYTES = 4 << 20  # the state dict's pickle; EfficientNet-Lite0's is 42 KB
MAX_HEADER_BYTES = 4 << 10  # each of the magic, version and sys-info pickles
MAX_TENSORS = 10_000
MAX_NDIM = 8
MAX_KEY_CHARS = 256

# Storage types a state dict of float networks uses, as numpy little-endian dtypes.
STORAGE_DTYPES = {
    "FloatStorage": np.dtype("<f4"),
    "HalfStorage": np.dtype("<f2"),
    "DoubleStorage": np.dtype("<f8"),
    "LongStorage": np.dtype("<i8"),
    "IntStorage": np.dtype("<i4"),
}


@dataclass(frozen=True)
class _StorageType:
    """What `torch.FloatStorage` & co. unpickle to: a name and a dtype, nothing callable."""

    name: str
    dtype: np.dtype

    def __setstate__(self, state):  # a BUILD opcode aimed at it
        raise pickle.UnpicklingError("BUILD on a storage type")


@dataclass(frozen=True)
class _Storage:
    key: str
    dtype: np.dtype
    numel: int

    def __setstate__(self, state):
        raise pickle.UnpicklingError("BUILD on a storage")


@dataclass(frozen=True)
class _Tensor:
    """A tensor's view of a storage, as recorded by the pickle; made an array once data is read."""

    storage: _Storage
    offset: int
    shape: tuple[int, ...]
    stride: tuple[int, ...]

    def __setstate__(self, state):
        raise pickle.UnpicklingError("BUILD on a tensor")


class _StateDict(OrderedDict):
    """`collections.OrderedDict` as the pickle may build it: only torch's `_metadata` is set."""

    def __setstate__(self, state):
        # torch attaches the modules' versions as `_metadata`; nothing else may be set.
        if not isinstance(state, dict) or set(state) - {"_metadata"}:
            raise pickle.UnpicklingError("unexpected attributes on an OrderedDict")


def _is_int(v: object) -> bool:
    return type(v) is int  # not bool, not a subclass


def _int_tuple(v: object, what: str) -> tuple[int, ...]:
    if type(v) is not tuple or len(v) > MAX_NDIM or not all(_is_int(i) and i >= 0 for i in v):
        raise pickle.UnpicklingError(f"bad tensor {what}: {v!r:.80}")
    return v


def _rebuild_tensor_v2(
    storage, storage_offset, size, stride, requires_grad, backward_hooks, metadata=None
):
    """Stands in for torch._utils._rebuild_tensor_v2: checks and records the view, no more."""
    if not isinstance(storage, _Storage):
        raise pickle.UnpicklingError("a tensor whose storage is not a storage record")
    if not _is_int(storage_offset) or storage_offset < 0:
        raise pickle.UnpicklingError(f"bad tensor offset {storage_offset!r:.40}")
    shape, strides = _int_tuple(size, "size"), _int_tuple(stride, "stride")
    if len(shape) != len(strides):
        raise pickle.UnpicklingError("tensor size and stride differ in length")
    if type(requires_grad) is not bool or metadata is not None:
        raise pickle.UnpicklingError("unexpected tensor flags")
    if type(backward_hooks) is not _StateDict or backward_hooks:
        raise pickle.UnpicklingError("a tensor with backward hooks")
    if 0 not in shape:
        last = storage_offset + sum((n - 1) * s for n, s in zip(shape, strides))
        if last >= storage.numel:
            raise pickle.UnpicklingError(
                f"tensor view {shape} at offset {storage_offset} runs past its storage "
                f"of {storage.numel} elements"
            )
    return _Tensor(storage, storage_offset, shape, strides)


_STATE_DICT_GLOBALS = {
    ("collections", "OrderedDict"): _StateDict,
    ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor_v2,
    **{("torch", name): _StorageType(name, dt) for name, dt in STORAGE_DTYPES.items()},
}


class _Refused(Exception):
    """A global the allow-list does not hold (kept apart from the pickle's own errors)."""


class _Unpickler(pickle.Unpickler):
    """An unpickler that resolves only allow-listed globals and storage persistent ids."""

    def __init__(self, file, allowed: dict, max_bytes: int) -> None:
        super().__init__(file)
        self._allowed = allowed
        self._max_bytes = max_bytes
        self.storages: dict[str, _Storage] = {}

    def find_class(self, module: str, name: str):
        try:
            return self._allowed[(module, name)]
        except (KeyError, TypeError):
            raise _Refused(f"{module}.{name}"[:120]) from None

    def persistent_load(self, pid):
        if type(pid) is not tuple or len(pid) not in (5, 6) or pid[0] != "storage":
            raise pickle.UnpicklingError(f"unexpected persistent id {pid!r:.80}")
        _, stype, key, location, numel = pid[:5]
        if not isinstance(stype, _StorageType):
            raise pickle.UnpicklingError("a storage of an unknown type")
        if type(key) is not str or not key or len(key) > MAX_KEY_CHARS:
            raise pickle.UnpicklingError(f"bad storage key {key!r:.40}")
        if type(location) is not str or not location.startswith(("cpu", "cuda")):
            raise pickle.UnpicklingError(f"bad storage location {location!r:.40}")
        if len(pid) == 6 and pid[5] is not None:  # views of storages: torch < 1.0 files
            raise pickle.UnpicklingError("storage views are not supported")
        if not _is_int(numel) or not 0 <= numel * stype.dtype.itemsize <= self._max_bytes:
            raise WeightsError(
                f"storage {key} declares {numel!r:.20} elements of {stype.name}, more than the "
                f"file's {self._max_bytes} bytes can hold"
            )
        storage = _Storage(key, stype.dtype, numel)
        if self.storages.setdefault(key, storage) != storage:
            raise pickle.UnpicklingError(f"storage {key} declared twice, differently")
        return storage


def read_state_dict(path: str | Path, max_bytes: int = MAX_FILE_BYTES) -> dict[str, np.ndarray]:
    """Every tensor of a legacy-format torch state dict, as numpy arrays (name -> array).

    Raises `WeightsError` for a file that is missing, too large, truncated, not this format, or
    whose pickle asks for anything a state dict does not need (nothing of it is executed).
    """
    path = Path(path)
    try:
        size = os.stat(path).st_size
        if size > max_bytes:
            raise WeightsError(f"{path.name}: {size} bytes, more than the {max_bytes} allowed")
        data = path.read_bytes()
    except OSError as exc:
        raise WeightsError(f"{path}: cannot read ({exc.strerror or exc})") from None
    try:
        return parse_state_dict(data)
    except WeightsError as exc:
        raise WeightsError(f"{path.name}: {exc}") from None


def parse_state_dict(data: bytes) -> dict[str, np.ndarray]:
    """`read_state_dict` on bytes in memory."""
    if data[:4] == b"PK\x03\x04":
        raise WeightsError(
            "a zip-format torch file (torch's default since 1.6); this reader takes the legacy format"
        )
    if not data.startswith(b"\x80\x02"):  # torch's legacy writer starts with pickle protocol 2
        raise WeightsError("not a torch legacy-format file (it does not start with a pickle)")
    view = memoryview(data)
    try:
        pos, magic = _load(view, 0, MAX_HEADER_BYTES, {}, len(data))
        if magic != MAGIC_NUMBER:
            raise WeightsError(
                "not a torch legacy-format file (no magic number; a zip-format .pth file "
                "or another format?)"
            )
        pos, version = _load(view, pos, MAX_HEADER_BYTES, {}, len(data))
        if version != PROTOCOL_VERSION:
            raise WeightsError(f"torch serialization protocol {version!r:.20}, not 1001")
        pos, info = _load(view, pos, MAX_HEADER_BYTES, {}, len(data))
        if not isinstance(info, dict) or info.get("little_endian") is not True:
            raise WeightsError("written on a big-endian machine or without sys info: unsupported")
        buf = io.BytesIO(view[pos : pos + MAX_PICKLE_BYTES])
        unpickler = _Unpickler(buf, _STATE_DICT_GLOBALS, len(data))
        state = unpickler.load()
        pos += buf.tell()  # the unpickler stops right after the pickle's STOP
        pos, keys = _load(view, pos, MAX_PICKLE_BYTES, {}, len(data))
    except WeightsError:
        raise
    except _Refused as exc:
        raise WeightsError(
            f"its pickle asks for {exc}, which a state dict does not need: refused, nothing run"
        ) from None
    except Exception as exc:  # whatever a malformed pickle raises: one clear error
        raise WeightsError(
            f"not a readable torch state dict ({type(exc).__name__}: {str(exc)[:120]})"
        ) from None
    tensors = _check_state(state)
    storages = unpickler.storages
    if (
        type(keys) is not list
        or sorted(set(keys)) != sorted(storages)
        or len(keys) != len(storages)
    ):
        raise WeightsError("its list of storage keys does not match the tensors' storages")
    arrays = {}
    for key in keys:
        st = storages[key]
        if pos + 8 > len(data):
            raise WeightsError(f"truncated: storage {key} is missing")
        count = int.from_bytes(view[pos : pos + 8], "little", signed=True)
        nbytes = count * st.dtype.itemsize
        if count != st.numel:
            raise WeightsError(f"storage {key} holds {count} elements, its tensors say {st.numel}")
        if pos + 8 + nbytes > len(data):
            raise WeightsError(f"truncated: storage {key} needs {nbytes} bytes")
        arrays[key] = np.frombuffer(data, st.dtype, count, pos + 8)
        pos += 8 + nbytes
    if pos != len(data):
        raise WeightsError(f"{len(data) - pos} unexpected bytes after the last storage")
    return {name: _materialise(t, arrays[t.storage.key]) for name, t in tensors.items()}


def _load(view: memoryview, pos: int, limit: int, allowed: dict, max_bytes: int):
    """One pickle at `pos` (at most `limit` bytes): (position after it, the object)."""
    buf = io.BytesIO(view[pos : pos + limit])
    obj = _Unpickler(buf, allowed, max_bytes).load()
    return pos + buf.tell(), obj


def _check_state(state: object) -> dict[str, _Tensor]:
    if type(state) is not _StateDict:
        raise WeightsError("its object is not a state dict (an OrderedDict of tensors)")
    if len(state) > MAX_TENSORS:
        raise WeightsError(f"{len(state)} tensors, more than {MAX_TENSORS}")
    for name, value in state.items():
        if type(name) is not str or len(name) > MAX_KEY_CHARS:
            raise WeightsError(f"a tensor name that is not a short string: {name!r:.40}")
        if type(value) is not _Tensor:
            raise WeightsError(f"{name}: not a tensor")
    return dict(state)


def _materialise(t: _Tensor, storage: np.ndarray) -> np.ndarray:
    """The tensor's view of its storage as a C-contiguous array of its own (bounds checked)."""
    if 0 in t.shape:
        return np.zeros(t.shape, storage.dtype)
    item = storage.dtype.itemsize
    view = np.lib.stride_tricks.as_strided(
        storage[t.offset :], t.shape, tuple(s * item for s in t.stride), writeable=False
    )
    return np.array(view, order="C")  # (ascontiguousarray would make a 0-d tensor 1-d)
