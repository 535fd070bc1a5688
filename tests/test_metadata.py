"""Metadata appended to a .tflite file: round trip, old layouts, bounded reading, corruption."""

from __future__ import annotations

import io
import json
import time
import tracemalloc
import zipfile

import pytest
from hostile_models import bomb, with_json

from edge_runtime.errors import ModelError
from edge_runtime.modelfile import metadata

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
    assert (
        got["integrity"]["flatbuffer_sha256"]
        == metadata.flatbuffer_sha256(data)
        == metadata.flatbuffer_sha256(FAKE)
    )
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
            "labels.txt": zipfile.ZIP_STORED,
            "edge_metadata.json": zipfile.ZIP_STORED,
        }
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
@pytest.mark.parametrize(
    "payload, needle",
    [
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
    ],
)
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
@pytest.mark.slow  # trains a run
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
        (
            broken("size", manifest=json.dumps(dict(good, input_size=[60000, 60000])).encode()),
            "input size",
        ),
        (broken("members", keras=buf.getvalue()), "members"),
    ]:
        with pytest.raises(ExportError, match=needle) as exc:
            _load_run(cfg)
        assert "\n" not in str(exc.value)


# ------------------------------------------------------------------------- standard metadata
def _tables_reader():
    """An independent reader: the flatbuffers package's generic Table accessors, by field slot."""
    import flatbuffers
    from flatbuffers import number_types as N
    from flatbuffers.table import Table

    def root(buf: bytes) -> Table:
        return Table(buf, flatbuffers.encode.Get(N.UOffsetTFlags.packer_type, buf, 0))

    def off(t, slot):
        return t.Offset(4 + 2 * slot)

    def string(t, slot):
        o = off(t, slot)
        return t.String(o + t.Pos).decode() if o else None

    def sub(t, slot):
        o = off(t, slot)
        return Table(t.Bytes, t.Indirect(o + t.Pos)) if o else None

    def tables(t, slot):
        o = off(t, slot)
        if not o:
            return []
        start = t.Vector(o)
        return [Table(t.Bytes, t.Indirect(start + 4 * i)) for i in range(t.VectorLen(o))]

    def scalar(t, slot, flags):
        o = off(t, slot)
        return t.Get(flags, o + t.Pos) if o else 0

    def floats(t, slot):
        o = off(t, slot)
        start = t.Vector(o)
        return [t.Get(N.Float32Flags, start + 4 * i) for i in range(t.VectorLen(o))]

    return root, string, sub, tables, scalar, floats, N


def check_standard_metadata(
    data: bytes, labels: list[str], size: tuple[int, int], info: dict
) -> None:
    """Every field the exporter writes, read back by slot number of metadata_schema.fbs."""
    from edge_runtime.modelfile import standard_metadata

    root, string, sub, tables, scalar, floats, N = _tables_reader()
    # Locate TFLITE_METADATA with the TFLite schema's own generated accessors.
    from tensorflow.lite.python import schema_py_generated as tfl

    model = tfl.Model.GetRootAs(data, 0)
    names = [model.Metadata(i).Name() for i in range(model.MetadataLength())]
    assert names.count(b"TFLITE_METADATA") == 1
    buf = model.Buffers(model.Metadata(names.index(b"TFLITE_METADATA")).Buffer())
    raw = buf.DataAsNumpy().tobytes()
    start = buf._tab.Vector(buf._tab.Offset(4))
    assert start % 16 == 0, "metadata buffer must be 16-byte aligned (schema force_align)"
    assert raw[4:8] == b"M001"
    m = root(raw)
    assert [string(m, i) for i in (0, 1, 2, 4, 5)] == [
        info["name"],
        info["description"],
        info["version"],
        info["author"],
        info["license"],
    ]
    assert string(m, 7) == "1.0.0"
    (ours,) = tables(m, 6)
    assert (
        string(ours, 0) == "edge_metadata.json"
        and scalar(ours, 2, N.Int8Flags) == 0
        and string(ours, 1)
    )
    (graph,) = tables(m, 3)
    (inp,), (out,) = tables(graph, 2), tables(graph, 3)
    assert string(inp, 0) == "image" and string(inp, 1)
    content = sub(inp, 3)
    assert scalar(content, 0, N.Uint8Flags) == 2  # ContentProperties.ImageProperties
    props = sub(content, 1)
    assert scalar(props, 0, N.Int8Flags) == 1  # ColorSpaceType.RGB
    assert (
        scalar(sub(props, 1), 0, N.Uint32Flags),
        scalar(sub(props, 1), 1, N.Uint32Flags),
    ) == size
    (unit,) = tables(inp, 4)
    assert scalar(unit, 0, N.Uint8Flags) == 1  # ProcessUnitOptions.NormalizationOptions
    assert floats(sub(unit, 1), 0) == [0.0] and floats(sub(unit, 1), 1) == [1.0]
    assert floats(sub(inp, 5), 0) == [255.0] and floats(sub(inp, 5), 1) == [0.0]  # Stats max, min
    assert string(out, 0) == "probability" and "threshold" in string(out, 1)
    assert scalar(sub(out, 3), 0, N.Uint8Flags) == 1  # FeatureProperties
    assert floats(sub(out, 5), 0) == [1.0] and floats(sub(out, 5), 1) == [0.0]
    (lab,) = tables(out, 6)
    assert string(lab, 0) == "labels.txt" and scalar(lab, 2, N.Int8Flags) == 2  # TENSOR_AXIS_LABELS
    # The runtime's own reader agrees, and the label file lists the labels in score order.
    std = standard_metadata.read(data)
    assert std["name"] == info["name"] and standard_metadata.labels_file(std) == "labels.txt"
    assert std["subgraphs"][0]["inputs"][0]["content"]["default_size"] == list(size)
    assert metadata.archive(data).read("labels.txt").decode().splitlines() == labels


@pytest.mark.slow  # trains a run
def test_exported_file_is_standard_private_and_verifiable(trained_run, tmp_path):
    """The real exporter: standard metadata field by field, nothing private, integrity intact."""
    import os
    import tempfile
    from pathlib import Path

    from exporter import ExportConfig, export
    from exporter.model_metadata import ModelInfo

    info = {
        "name": "shapes",
        "description": "test model",
        "version": "7",
        "author": "QA",
        "license": "MIT",
    }
    out = tmp_path / "m.tflite"
    result = export(
        ExportConfig(
            run_dir=str(trained_run), out=str(out), quant="float32", model_info=ModelInfo(**info)
        ),
        log=lambda m: None,
    )
    data = out.read_bytes()
    meta = metadata.read(data)
    check_standard_metadata(
        data, meta["labels"], (meta["input"]["width"], meta["input"]["height"]), info
    )
    assert meta["integrity"]["flatbuffer_sha256"] == metadata.flatbuffer_sha256(data)
    # Nothing private: no string in the embedded metadata (ours or the standard one) starts with
    # the training machine's home or temp directories or names the run's location.
    from edge_runtime.modelfile import standard_metadata

    private = {
        str(Path.home()),
        tempfile.gettempdir(),
        os.path.realpath(tempfile.gettempdir()),
        str(trained_run.parent),
    }

    def strings(v):
        if isinstance(v, dict):
            for x in v.values():
                yield from strings(x)
        elif isinstance(v, list):
            for x in v:
                yield from strings(x)
        elif isinstance(v, str):
            yield v

    embedded = (
        list(strings(meta))
        + list(strings(standard_metadata.read(data)))
        + list(strings(result.metadata))
    )
    leaks = [s for s in embedded if any(s.startswith(p) for p in private)]
    assert not leaks and meta["training"]["source_csv"] == "labels.csv"
    assert not any(p.encode() in data for p in private)  # not anywhere in the file's bytes either


def _weight_byte(flat: bytes) -> int:
    """Position of a byte inside the model's largest constant buffer (weights)."""
    from edge_runtime.modelfile.flatbuffer import Reader

    r = Reader(flat)
    model = r.table(r.u32(0))
    vectors = [r.vector(b, 0, elem=1) for b in r.tables(model, 4)]
    first, n = max((v for v in vectors if v), key=lambda v: v[1])
    return first + n // 2


@runtime
def test_tampered_weight_byte_fails_verify(fixture_models, tmp_path):
    import subprocess
    import sys

    from click.testing import CliRunner

    from edge_runtime import Classifier
    from edge_runtime.cli import main_group
    from edge_runtime.modelfile.integrity import Status, verify

    good = fixture_models["int8"].read_bytes()
    assert verify(fixture_models["int8"]).status is Status.INTACT
    bad = bytearray(good)
    bad[_weight_byte(metadata.strip(good))] ^= 0x01
    tampered = tmp_path / "tampered.tflite"
    tampered.write_bytes(bytes(bad))
    Classifier.from_file(tampered)  # still a loadable model: only the record can tell
    report = verify(tampered)
    assert report.status is Status.MODIFIED and "flatbuffer SHA-256 differs" in report.problems[0]
    runner = CliRunner()
    ok = runner.invoke(main_group, ["verify", str(fixture_models["int8"])])
    assert ok.exit_code == 0 and "intact" in ok.output
    res = runner.invoke(main_group, ["verify", str(tampered), "--json"])
    assert res.exit_code == 1 and json.loads(res.output)["status"] == "modified"
    info = runner.invoke(main_group, ["info", str(tampered)])
    assert info.exit_code == 1 and "MODIFIED" in info.output
    # A real process, as a device's deploy script would run it.
    proc = subprocess.run(
        [sys.executable, "-m", "edge_runtime.cli", "verify", str(tampered)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert (
        proc.returncode == 1
        and "MODIFIED after export" in proc.stdout
        and "Traceback" not in proc.stderr
    )
    # A changed label file is caught too.
    import zlib

    from hostile_models import archive as make_archive

    flat = metadata.strip(good)
    arc = metadata.archive(good)
    members = {"labels.txt": b"rod\ngreen\nblue\n", metadata.MEMBER: arc.read(metadata.MEMBER)}
    relabelled = flat + make_archive(
        [(k, v, 0, zlib.crc32(v), len(v), len(v)) for k, v in members.items()], len(flat)
    )
    (tmp_path / "relabelled.tflite").write_bytes(relabelled)
    assert verify(tmp_path / "relabelled.tflite").problems == ["labels.txt differs"]
    damaged = tmp_path / "damaged.tflite"
    damaged.write_bytes(flat + good[len(flat) :].replace(b"red\ngreen", b"rod\ngreen"))
    assert verify(damaged).problems == ["labels.txt is damaged (CRC mismatch)"]
    proc = subprocess.run(
        [sys.executable, "-m", "edge_runtime.cli", "verify", str(tmp_path / "missing.tflite")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1


@runtime
def test_old_models_still_load(fixture_models, tmp_path):
    """A model exported before standard metadata and integrity records: JSON only, deflated,
    offsets relative to the archive."""
    from click.testing import CliRunner

    from edge_runtime import Classifier
    from edge_runtime.cli import main_group
    from edge_runtime.modelfile.integrity import Status

    plain = fixture_models["plain"].read_bytes()
    old = tmp_path / "old.tflite"
    old.write_bytes(
        old_layout(
            plain,
            {
                "schema_version": 1,
                "labels": ["a", "b", "c"],
                "thresholds": [0.1, 0.2, 0.3],
                "input": {"width": 32, "height": 32},
            },
        )
    )
    clf = Classifier.from_file(old)
    assert clf.labels == ["a", "b", "c"] and list(clf.thresholds) == [0.1, 0.2, 0.3]
    assert clf.standard_metadata is None and clf.integrity().status is Status.UNVERIFIED
    res = CliRunner().invoke(main_group, ["verify", str(old)])
    assert res.exit_code == 1 and "unverified" in res.output
    res = CliRunner().invoke(main_group, ["info", str(old), "--json"])
    assert res.exit_code == 0 and json.loads(res.output)["integrity"]["status"] == "unverified"


@runtime
def test_labels_from_standard_metadata_alone(fixture_models):
    """A model with only standard metadata (as TFLite Support writes it) gets its label names."""
    from edge_runtime import Classifier

    data = fixture_models["int8"].read_bytes()
    flat = metadata.strip(data)
    import zlib

    from hostile_models import archive as make_archive

    labels = b"cat\ndog\nbird\n"
    only_labels = flat + make_archive(
        [("labels.txt", labels, 0, zlib.crc32(labels), len(labels), len(labels))], len(flat)
    )
    clf = Classifier.from_bytes(only_labels)
    assert clf.labels == ["cat", "dog", "bird"] and clf.standard_metadata["name"] == "fixture-int8"
    wrong = b"cat\ndog\n"  # two names for three outputs: ignored, not an error
    two = flat + make_archive(
        [("labels.txt", wrong, 0, zlib.crc32(wrong), len(wrong), len(wrong))], len(flat)
    )
    assert Classifier.from_bytes(two).labels == ["label_0", "label_1", "label_2"]


def test_standard_metadata_goes_in_without_repacking_the_model(fixture_models):
    """`populate` keeps the converter's bytes as they are behind a prefix: the model computes the
    same, the bounded check passes, a second call replaces the entry, and a Model field this
    writer does not know is refused rather than dropped."""
    import flatbuffers
    import numpy as np

    from edge_runtime.inference.backend import interpreter_class
    from edge_runtime.modelfile import standard_metadata
    from edge_runtime.modelfile.flatbuffer import Reader, check_structure
    from exporter.model_metadata import ModelInfo, metadata_buffer, populate

    flat = fixture_models["plain"].read_bytes()  # the converter's output, nothing added
    meta = metadata_buffer(ModelInfo(name="once"), ["r", "g", "b"], 32, 32, "float32")
    once = populate(flat, meta)
    assert once.endswith(flat) and (len(once) - len(flat)) % 16 == 0
    check_structure(once)
    twice = populate(once, metadata_buffer(ModelInfo(name="twice"), ["r", "g", "b"], 32, 32, "x"))
    check_structure(twice)
    assert standard_metadata.read(once)["name"] == "once"
    assert standard_metadata.read(twice)["name"] == "twice"
    r = Reader(twice)
    root = r.table(r.u32(0))
    names = [r.string(t, 0) for t in r.tables(root, 6)]
    assert names.count(b"TFLITE_METADATA") == 1 and len(names) == len(set(names))
    cls, _ = interpreter_class()
    x = np.random.default_rng(0).random((1, 32, 32, 3), dtype=np.float32) * 255
    outs = []
    for data in (flat, once, twice):
        it = cls(model_content=data)
        it.allocate_tensors()
        it.set_tensor(it.get_input_details()[0]["index"], x)
        it.invoke()
        outs.append(it.get_tensor(it.get_output_details()[0]["index"]).copy())
    assert np.array_equal(outs[0], outs[1]) and np.array_equal(outs[0], outs[2])

    b = flatbuffers.Builder(64)
    b.StartObject(10)
    b.PrependUint32Slot(0, 3, 0)  # version
    b.PrependUint32Slot(9, 1, 0)  # a field from a schema newer than this writer
    b.Finish(b.EndObject(), file_identifier=b"TFL3")
    with pytest.raises(ModelError, match=r"fields \[9\]"):
        populate(bytes(b.Output()), meta)
    with pytest.raises(ModelError, match="not a TFLite flatbuffer"):
        populate(flat[:40], meta)
