"""Metadata appended to a .tflite file: round trip, old layouts, bounded reading, corruption."""
from __future__ import annotations

import io
import json
import time
import tracemalloc
import zipfile

import pytest

from edge_runtime import metadata
from edge_runtime.errors import ModelError
from hostile_models import bomb, with_json

runtime = pytest.mark.runtime

FAKE = b"\x1c\x00\x00\x00TFL3" + bytes(range(256)) * 4  # a flatbuffer-shaped prefix


def old_layout(flat: bytes, meta: dict) -> bytes:
    """How models were exported before schema 2: a deflated archive with offsets relative to itself."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        zf.writestr(metadata.MEMBER, json.dumps(meta))
    return flat + buf.getvalue()


@runtime
def test_round_trip_and_replace():
    meta = {"labels": ["a", "b"], "thresholds": [0.3, 0.7], "input": {"width": 32}}
    data = metadata.embed(FAKE, meta, files={"labels.txt": b"a\nb\n"})
    assert data.startswith(FAKE)
    got = metadata.read(data)
    assert got["labels"] == ["a", "b"] and got["thresholds"] == [0.3, 0.7]
    assert got["schema_version"] == metadata.SCHEMA_VERSION
    assert got["integrity"]["flatbuffer_sha256"] == metadata.flatbuffer_sha256(data) == metadata.flatbuffer_sha256(FAKE)
    arc = metadata.archive(data)
    assert arc.start == len(FAKE) and sorted(arc.names) == ["edge_metadata.json", "labels.txt"]
    assert arc.read("labels.txt") == b"a\nb\n"
    again = metadata.embed(data, {"labels": ["c"]})  # re-embedding replaces, never stacks
    assert metadata.strip(again) == FAKE and metadata.read(again)["labels"] == ["c"]


@runtime
def test_archive_is_what_other_zip_readers_read():
    """Stored members, offsets from the start of the file: the TFLite Support layout."""
    data = metadata.embed(FAKE, {"labels": ["a"]}, files={"labels.txt": b"a\n"})
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        assert zf.testzip() is None
        assert {i.filename: i.compress_type for i in zf.infolist()} == {
            "labels.txt": zipfile.ZIP_STORED, "edge_metadata.json": zipfile.ZIP_STORED}
        assert min(i.header_offset for i in zf.infolist()) == len(FAKE)  # absolute offsets
        assert json.loads(zf.read("edge_metadata.json"))["labels"] == ["a"]


@runtime
def test_old_layout_still_reads():
    data = old_layout(FAKE, {"labels": ["x", "y"], "thresholds": [0.5, 0.5]})
    assert metadata.read(data)["labels"] == ["x", "y"]
    assert metadata.strip(data) == FAKE
    assert "integrity" not in metadata.read(data)


@runtime
def test_plain_model_has_no_metadata(tmp_path):
    assert metadata.read(FAKE) is None
    p = tmp_path / "m.tflite"
    p.write_bytes(FAKE)
    assert metadata.read(p) is None


@runtime
def test_check_tflite():
    metadata.check_tflite(FAKE)
    with pytest.raises(ModelError, match="not a TFLite model"):
        metadata.check_tflite(b"PK\x03\x04 something else")
    with pytest.raises(ModelError):
        metadata.check_tflite(b"")
    with pytest.raises(ModelError):
        metadata.embed(b"garbage!", {})


@runtime
def test_corrupt_archive_is_a_model_error():
    data = bytearray(metadata.embed(FAKE, {"labels": ["a"]}))
    start = len(FAKE) + 30 + len(metadata.MEMBER)  # inside the stored JSON
    data[start : start + 8] = b"\xff" * 8
    with pytest.raises(ModelError, match="corrupt"):
        metadata.read(bytes(data))


@runtime
@pytest.mark.parametrize("lie", [False, True])
def test_zip_bomb_is_refused_fast_and_small(lie):
    """The 3 GiB-inflating member of issue 13 (directory truthful, or lying that it is 1 KB)."""
    data = bomb(FAKE, gib=3 if not lie else 0.5, lie=lie, crc=False)
    assert len(data) < 4 << 20
    tracemalloc.start()
    t0 = time.perf_counter()
    with pytest.raises(ModelError, match="limit|not the 1,000 bytes") as exc:
        metadata.read(data, "bomb.tflite")
    seconds = time.perf_counter() - t0
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert str(exc.value).startswith("bomb.tflite: ") and "\n" not in str(exc.value)
    # Generous bounds (a shared CI machine): the point is seconds vs. tens of seconds and KB vs GB.
    assert peak < 16 << 20, peak
    assert seconds < 5, seconds


@runtime
@pytest.mark.parametrize("payload, needle", [
    (b"[" * 100_000 + b"]" * 100_000, "nested"),
    (json.dumps({"a": [[[[[[[[[[1]]]]]]]]]]}).encode(), "nested deeper"),
    (json.dumps({"labels": "abc"}).encode(), "labels"),
    (json.dumps({"labels": ["a"], "thresholds": [float("nan")]}).encode(), "thresholds"),
    (json.dumps({"thresholds": [True]}).encode(), "thresholds"),
    (json.dumps({"input": {"width": 60000, "height": 60000}}).encode(), "width"),
    (json.dumps({"input": []}).encode(), "input"),
    (json.dumps([1, 2]).encode(), "not an object"),
    (b'{"labels": ["a"', "corrupt"),
    (b" " * (metadata.MAX_MEMBER_BYTES + 1), "limit"),
])
def test_hostile_json_is_a_one_line_model_error(payload, needle):
    with pytest.raises(ModelError, match=needle) as exc:
        metadata.read(with_json(FAKE, payload, method=8), "m.tflite")
    assert "\n" not in str(exc.value) and str(exc.value).startswith("m.tflite: ")


@runtime
def test_archive_directory_limits():
    from hostile_models import archive

    many = archive([(f"f{i}", b"", 0, 0, 0, 0) for i in range(100)], len(FAKE))
    with pytest.raises(ModelError, match="entries"):
        metadata.read(FAKE + many)
    # An EOCD signature inside the weights (not at the end) is not an archive.
    assert metadata.read(FAKE + b"PK\x05\x06" + b"\0" * 40) is None


# ------------------------------------------------------------------------- the exporter's reading
def test_exporter_reads_run_directories_with_bounds(trained_run, tmp_path):
    import shutil

    from exporter import ExportConfig
    from exporter.export import MAX_MANIFEST_BYTES, ExportError, _load_run

    def broken(name: str, manifest: bytes | None = None, keras: bytes | None = None):
        d = tmp_path / name
        shutil.copytree(trained_run, d)
        if manifest is not None:
            (d / "manifest.json").write_bytes(manifest)
        if keras is not None:
            (d / "model.keras").write_bytes(keras)
        return ExportConfig(run_dir=str(d), out=str(tmp_path / f"{name}.tflite"))

    good = json.loads((trained_run / "manifest.json").read_text())
    big = json.dumps(dict(good, pad=" " * MAX_MANIFEST_BYTES)).encode()
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for i in range(100):
            zf.writestr(f"x{i}", b"")
    for cfg, needle in [
        (broken("big", manifest=big), "over 16 MiB"),
        (broken("deep", manifest=b"[" * 100_000 + b"]" * 100_000), "nested"),
        (broken("list", manifest=b"[1]"), "not an object"),
        (broken("labels", manifest=json.dumps(dict(good, labels="abc")).encode()), "labels"),
        (broken("size", manifest=json.dumps(dict(good, input_size=[60000, 60000])).encode()), "input size"),
        (broken("members", keras=buf.getvalue()), "members"),
    ]:
        with pytest.raises(ExportError, match=needle) as exc:
            _load_run(cfg)
        assert "\n" not in str(exc.value)
