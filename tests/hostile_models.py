"""Hostile variants of a good `.tflite` file, built in a second from a seed (no TensorFlow).

Used by tests/test_fuzz_models.py, and on the command line to make the measured case of issue 13:

    python tests/hostile_models.py bomb GOOD.tflite OUT.tflite [GIB]

writes GOOD's flatbuffer followed by an archive whose `edge_metadata.json` inflates to GIB
(default 3) GiB of JSON whitespace: a ~3 MB file.
"""

from __future__ import annotations

import json
import random
import struct
import sys
import zlib
from pathlib import Path

from edge_runtime.modelfile import metadata as md
from edge_runtime.modelfile.flatbuffer import Reader

_MIB = 1 << 20


def deflate_run(n_mib: int, byte: bytes = b" ", crc: bool = True) -> tuple[bytes, int]:
    """(raw deflate stream inflating to `n_mib` MiB of `byte`, its CRC-32 or 0), built in
    milliseconds: after a full flush the compressor's state is reset, so each 1 MiB chunk
    compresses to the same bytes and the stream is one chunk repeated."""
    chunk_in = byte * _MIB
    c = zlib.compressobj(9, zlib.DEFLATED, -15)
    chunk = c.compress(chunk_in) + c.flush(zlib.Z_FULL_FLUSH)
    assert c.compress(chunk_in) + c.flush(zlib.Z_FULL_FLUSH) == chunk
    tail = c.flush()
    value = 0
    # A bomb is a bomb with a wrong CRC too (a reader inflates it all before checking); the
    # command line makes a well-formed one: ~1 s of zlib.crc32 for 3 GiB.
    for _ in range(n_mib if crc else 0):
        value = zlib.crc32(chunk_in, value)
    return chunk * n_mib + tail, value


def archive(members: list[tuple[str, bytes, int, int, int, int]], offset: int) -> bytes:
    """A ZIP from (name, stream, method, crc, declared compressed size, declared size) tuples:
    the declared sizes may lie, as a hostile file's do. Offsets count from `offset` before it."""
    local, central = bytearray(), bytearray()
    for name, stream, method, crc, csize, size in members:
        raw = name.encode()
        at = offset + len(local)
        local += struct.pack(
            "<4sHHHHHIIIHH", b"PK\x03\x04", 20, 0, method, 0, 0x21, crc, csize, size, len(raw), 0
        )
        local += raw + stream
        central += (
            struct.pack(
                "<4sHHHHHHIIIHHHHHII",
                b"PK\x01\x02",
                20,
                20,
                0,
                method,
                0,
                0x21,
                crc,
                csize,
                size,
                len(raw),
                0,
                0,
                0,
                0,
                0,
                at,
            )
            + raw
        )
    n = len(members)
    return bytes(
        local
        + central
        + struct.pack(
            "<4sHHHHIIH",
            b"PK\x05\x06",
            0,
            0,
            n & 0xFFFF,
            n & 0xFFFF,
            len(central),
            offset + len(local),
            0,
        )
    )


def with_json(flat: bytes, payload: bytes, method: int = 0) -> bytes:
    """`flat` + an archive whose metadata member holds `payload` (stored or deflated)."""
    stream = payload if method == 0 else zlib.compress(payload, 9)[2:-4]
    return flat + archive(
        [(md.MEMBER, stream, method, zlib.crc32(payload), len(stream), len(payload))], len(flat)
    )


def bomb(good: bytes, gib: float = 3, lie: bool = False, crc: bool = True) -> bytes:
    """The model with a metadata member inflating to `gib` GiB; `lie`: its directory says 1 KB."""
    flat = md.strip(good)
    stream, crc = deflate_run(int(gib * 1024), crc=crc)
    size = 1000 if lie else int(gib * 1024) * _MIB
    return flat + archive([(md.MEMBER, stream, 8, crc, len(stream), size)], len(flat))


def input_shape_at(flat: bytes) -> int:
    """Byte position of the input tensor's shape vector (its length word) in a TFLite flatbuffer."""
    r = Reader(flat)
    model = r.table(r.u32(0))
    sub = r.tables(model, 2)[0]
    first, _ = r.vector(sub, 1)  # subgraph.inputs
    tensor = r.tables(sub, 0)[struct.unpack_from("<i", flat, first)[0]]
    at = r.field(tensor, 0)
    return at + r.u32(at)


def with_input_shape(good: bytes, dims: list[int]) -> bytes:
    """The model with its input shape (and signature) overwritten in place by `dims` (rank 4)."""
    flat, tail = md.strip(good), good[len(md.strip(good)) :]
    data = bytearray(flat)
    at = input_shape_at(flat)
    struct.pack_into("<4i", data, at + 4, *dims)
    r = Reader(bytes(flat))
    # The signature (field 7) holds -1 for a dynamic batch: patch it alike when present.
    model = r.table(r.u32(0))
    sub = r.tables(model, 2)[0]
    first, _ = r.vector(sub, 1)
    tensor = r.tables(sub, 0)[struct.unpack_from("<i", flat, first)[0]]
    sig = r.field(tensor, 7)
    if sig is not None:
        sig_at = sig + r.u32(sig)
        struct.pack_into("<4i", data, sig_at + 4, *dims)
    return bytes(data) + tail


def std_metadata_span(flat: bytes) -> tuple[int, int] | None:
    """(first byte, length) of the TFLITE_METADATA buffer's data, or None."""
    r = Reader(flat)
    model = r.table(r.u32(0))
    for entry in r.tables(model, 6):
        if r.string(entry, 0) == b"TFLITE_METADATA":
            return r.vector(r.tables(model, 4)[r.scalar(entry, 1)], 0, elem=1)
    return None


def cases(good: bytes, seed: int = 0, n_mutations: int = 18) -> dict[str, tuple[bytes, str]]:
    """{case name: (file bytes, expectation)}: "refuse" (must be a one-line error) or "either"
    (a one-line error or a correct result)."""
    rng = random.Random(seed)
    flat = md.strip(good)
    meta = md.read(good) or {}
    out: dict[str, tuple[bytes, str]] = {}

    out["bomb_3gib"] = (bomb(good, 3, crc=False), "refuse")
    out["bomb_lying_directory"] = (bomb(good, 0.25, lie=True, crc=False), "refuse")
    big = json.dumps(dict(meta, padding=" " * (md.MAX_MEMBER_BYTES + 10))).encode()
    out["oversized_stored_json"] = (with_json(flat, big), "refuse")
    out["nested_json_deep"] = (with_json(flat, b"[" * 200_000 + b"]" * 200_000, method=8), "refuse")
    out["nested_json_moderate"] = (
        with_json(flat, json.dumps(dict(meta, x=[[[[[[[[[[1]]]]]]]]]])).encode()),
        "refuse",
    )
    for key, value in [
        ("labels", {"a": 1}),
        ("labels", ["x"] * 20_000),
        ("thresholds", [float("nan")] * 3),
        ("thresholds", [5, 0.5, 0.5]),
        ("input", {"width": 60000, "height": 60000}),
        ("input", {"width": "32"}),
        ("labels", ["a", "b"]),
        ("integrity", {"flatbuffer_sha256": 7}),
    ]:
        payload = json.dumps(dict(meta, **{key: value})).encode()
        out[f"json_bad_{key}_{len(out)}"] = (with_json(flat, payload), "refuse")
    out["json_not_utf8"] = (with_json(flat, b"\xff\xfe{}"), "refuse")
    many = [(f"f{i}", b"", 0, 0, 0, 0) for i in range(1000)]
    out["archive_many_entries"] = (flat + archive(many, len(flat)), "refuse")
    tail = bytearray(good[len(flat) :])
    for name, (pos, value) in {
        "eocd_directory_offset": (len(tail) - 6, 0xFFFFFF00),
        "eocd_directory_size": (len(tail) - 10, 0x7FFFFFFF),
        "eocd_entry_count": (len(tail) - 12, 9),
    }.items():
        bad = bytearray(tail)
        struct.pack_into("<I" if "count" not in name else "<H", bad, pos, value)
        out[name] = (flat + bytes(bad), "refuse")
    out["absurd_input_60000"] = (with_input_shape(good, [1, 60000, 60000, 3]), "refuse")
    out["negative_input_dim"] = (with_input_shape(good, [1, -7, 32, 3]), "refuse")
    out["zero_input_dim"] = (with_input_shape(good, [1, 0, 32, 3]), "either")
    out["odd_input_shape"] = (with_input_shape(good, [1, 33, 31, 3]), "either")
    for _ in range(8):
        cut = rng.randrange(8, len(good))
        out[f"truncated_{cut}"] = (good[:cut], "either")
    for i in range(n_mutations):
        data = bytearray(good)
        if i % 3 == 2:  # a zeroed run
            at, n = rng.randrange(0, len(flat) - 64), rng.randrange(4, 64)
            data[at : at + n] = b"\0" * n
        else:
            for _ in range(rng.randrange(1, 16)):
                data[rng.randrange(0, len(flat))] = rng.randrange(256)
        out[f"mutated_{i}"] = (bytes(data), "either")
    span = std_metadata_span(flat)
    if span is not None:  # the standard metadata is parsed by the runtime too: damage it
        first, n = span
        for i in range(6):
            data = bytearray(good)
            for _ in range(rng.randrange(1, 6)):
                data[first + rng.randrange(n)] = rng.randrange(256)
            out[f"stdmeta_mutated_{i}"] = (bytes(data), "either")
        data = bytearray(good)
        struct.pack_into("<I", data, first, 0x7FFFFFF0)  # its root offset far past its end
        out["stdmeta_bad_root"] = (bytes(data), "refuse")
    return out


if __name__ == "__main__":
    if len(sys.argv) not in (4, 5) or sys.argv[1] != "bomb":
        sys.exit("usage: python tests/hostile_models.py bomb GOOD.tflite OUT.tflite [GIB]")
    data = bomb(Path(sys.argv[2]).read_bytes(), float(sys.argv[4]) if len(sys.argv) == 5 else 3)
    Path(sys.argv[3]).write_bytes(data)
    print(f"{sys.argv[3]}: {len(data):,} bytes")
