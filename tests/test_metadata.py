"""Metadata appended to a .tflite file: round trip, plain files, corruption."""
from __future__ import annotations

import pytest

from edge_runtime import metadata
from edge_runtime.errors import ModelError

pytestmark = pytest.mark.runtime

FAKE = b"\x1c\x00\x00\x00TFL3" + bytes(range(256)) * 4  # a flatbuffer-shaped prefix


def test_round_trip_and_replace():
    meta = {"labels": ["a", "b"], "thresholds": [0.3, 0.7], "input": {"width": 32}}
    data = metadata.embed(FAKE, meta)
    assert data.startswith(FAKE)
    got = metadata.read(data)
    assert got["labels"] == ["a", "b"] and got["thresholds"] == [0.3, 0.7]
    assert got["schema_version"] == metadata.SCHEMA_VERSION
    again = metadata.embed(data, {"labels": ["c"]})  # re-embedding replaces, never stacks
    assert metadata.strip(again) == FAKE and metadata.read(again)["labels"] == ["c"]


def test_plain_model_has_no_metadata(tmp_path):
    assert metadata.read(FAKE) is None
    p = tmp_path / "m.tflite"
    p.write_bytes(FAKE)
    assert metadata.read(p) is None


def test_check_tflite():
    metadata.check_tflite(FAKE)
    with pytest.raises(ModelError, match="not a TFLite model"):
        metadata.check_tflite(b"PK\x03\x04 something else")
    with pytest.raises(ModelError):
        metadata.check_tflite(b"")
    with pytest.raises(ModelError):
        metadata.embed(b"garbage!", {})


def test_corrupt_archive_is_a_model_error():
    data = bytearray(metadata.embed(FAKE, {"labels": ["a"]}))
    # Break the compressed member but keep the archive structure findable.
    start = len(FAKE) + 30 + len(metadata.MEMBER)
    data[start : start + 8] = b"\xff" * 8
    with pytest.raises(ModelError, match="corrupt"):
        metadata.read(bytes(data))
