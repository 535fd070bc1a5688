"""edge_runtime.evaluation.dataset: both CSV layouts and every kind of bad input (no TensorFlow needed)."""

from __future__ import annotations

import sys

import numpy as np
import pytest
from PIL import Image

from edge_runtime.errors import LabelsError
from edge_runtime.evaluation.dataset import read_labels_csv, write_labels_csv


@pytest.fixture
def folder(tmp_path):
    for name in ("a.png", "b.png", "c.png", "d.png"):
        Image.new("RGB", (8, 8), (10, 20, 30)).save(tmp_path / name)
    return tmp_path


def write(folder, text, name="labels.csv"):
    p = folder / name
    p.write_text(text)
    return p


@pytest.mark.runtime
def test_joined_layout_all_separators_and_empty_negative(folder):
    t = read_labels_csv(
        write(folder, "filename,labels\na.png,dog cat\nb.png,cat;bird\nc.png,bird|dog\nd.png,\n")
    )
    assert t.labels == ["bird", "cat", "dog"]  # sorted unique
    assert t.y.tolist() == [[0, 1, 1], [1, 1, 0], [1, 0, 1], [0, 0, 0]]
    assert t.y.dtype == np.uint8
    assert t.paths[0] == (folder / "a.png").resolve() and t.paths[0].is_absolute()
    assert t.summary() == "4 rows used, 0 skipped"
    assert t.skipped == [] and t.warnings == []


@pytest.mark.runtime
def test_column_layout_keeps_column_order_and_absolute_paths(folder):
    csv = write(folder, f"filename,zebra,ant\n{folder / 'a.png'},1,0\nb.png,0,1\nc.png,1,1\n")
    t = read_labels_csv(csv)
    assert t.labels == ["zebra", "ant"]
    assert t.y.tolist() == [[1, 0], [0, 1], [1, 1]]


@pytest.mark.runtime
def test_given_label_order_and_unknown_labels(folder):
    csv = write(folder, "filename,labels\na.png,cat\nb.png,dog\n")
    t = read_labels_csv(csv, labels=["dog", "cat", "owl"])
    assert t.labels == ["dog", "cat", "owl"] and t.y.tolist() == [[0, 1, 0], [1, 0, 0]]
    assert any("'owl' has no positive" in w for w in t.warnings)
    with pytest.raises(LabelsError, match=r"\['dog'\].*row 3 \(b.png\)"):
        read_labels_csv(csv, labels=["cat"])
    cols = write(folder, "filename,cat,dog\na.png,1,0\n", "cols.csv")
    with pytest.raises(LabelsError, match=r"missing column\(s\) \['owl'\]"):
        read_labels_csv(cols, labels=["cat", "dog", "owl"])
    with pytest.raises(LabelsError, match=r"unknown column\(s\) \['dog'\]"):
        read_labels_csv(cols, labels=["cat"])


@pytest.mark.runtime
def test_missing_file_row_is_skipped_and_named(folder):
    t = read_labels_csv(write(folder, "filename,labels\na.png,cat\nnope.png,cat\n"))
    assert len(t) == 1 and t.summary() == "1 rows used, 1 skipped"
    s = t.skipped[0]
    assert (s.row, s.filename) == (3, "nope.png") and "not found" in s.reason
    assert "row 3 (nope.png)" in str(s)
    assert len(read_labels_csv(folder / "labels.csv", check_files=False)) == 2


@pytest.mark.runtime
def test_empty_label_name_is_dropped_with_warning(folder):
    t = read_labels_csv(write(folder, "filename,labels\na.png,cat;;dog\nb.png,dog;\n"))
    assert t.labels == ["cat", "dog"] and t.y.tolist() == [[1, 1], [0, 1]]
    assert any("row 2 (a.png)" in w and "empty label" in w for w in t.warnings)
    assert any("row 3 (b.png)" in w for w in t.warnings)


@pytest.mark.runtime
def test_bad_binary_value_skips_row_naming_column_and_value(folder):
    t = read_labels_csv(write(folder, "filename,cat,dog\na.png,1,0\nb.png,0,yes\nc.png,2,0\n"))
    assert len(t) == 1
    assert [(s.row, s.filename) for s in t.skipped] == [(3, "b.png"), (4, "c.png")]
    assert "'dog'" in t.skipped[0].reason and "'yes'" in t.skipped[0].reason
    assert "'cat'" in t.skipped[1].reason and "'2'" in t.skipped[1].reason


@pytest.mark.runtime
def test_duplicate_rows_keep_the_first(folder):
    t = read_labels_csv(write(folder, "filename,labels\na.png,cat\nb.png,dog\n./a.png,dog\n"))
    assert len(t) == 2 and t.y.tolist() == [[1, 0], [0, 1]]
    s = t.skipped[0]
    assert (s.row, s.filename) == (4, "./a.png") and "duplicate of row 2" in s.reason


@pytest.mark.runtime
def test_label_without_positive_warns(folder):
    t = read_labels_csv(write(folder, "filename,cat,dog\na.png,1,0\nb.png,0,0\n"))
    assert t.warnings == ["label 'dog' has no positive example"]


@pytest.mark.runtime
@pytest.mark.parametrize(
    "text, match",
    [
        ("", "empty file"),
        ("image,labels\na.png,cat\n", "no 'filename' column"),
        ("a.png,cat\nb.png,dog\n", "no 'filename' column"),
        (
            "filename,labels\nx.png,cat\ny.png,dog\n",
            r"no usable rows \(2 skipped\).*row 2 \(x.png\)",
        ),
        ("filename,labels\n", "no usable rows"),
    ],
)
def test_unusable_csv_raises(folder, text, match):
    with pytest.raises(LabelsError, match=match):
        read_labels_csv(write(folder, text))


@pytest.mark.runtime
def test_missing_csv(tmp_path):
    with pytest.raises(LabelsError, match="not found"):
        read_labels_csv(tmp_path / "none.csv")


@pytest.mark.runtime
def test_write_then_read_roundtrip(folder):
    paths = [folder / "a.png", folder / "b.png"]
    write_labels_csv(folder / "out.csv", paths, np.array([[1, 0], [1, 1]]), ["x", "y"])
    t = read_labels_csv(folder / "out.csv")
    assert t.labels == ["x", "y"] and t.paths == [p.resolve() for p in paths]
    assert t.y.tolist() == [[1, 0], [1, 1]]
    write_labels_csv(folder / "out.csv", paths[:1], np.array([[0, 1]]), ["x", "y"])  # replaces it
    assert read_labels_csv(folder / "out.csv").y.tolist() == [[0, 1]]
    assert not [
        p.name for p in folder.iterdir() if p.name.endswith(".tmp")
    ]  # no temporary file left


@pytest.mark.runtime
def test_subset_keeps_rows_and_handles_empty_index(folder):
    t = read_labels_csv(write(folder, "filename,labels\na.png,cat\nb.png,dog\nc.png,cat dog\n"))
    s = t.subset(np.array([2, 0]))
    assert s.rows == [4, 2] and s.y.tolist() == [[1, 1], [1, 0]] and s.labels == t.labels
    e = t.subset([])
    assert len(e) == 0 and e.y.shape == (0, 2) and e.y.dtype == np.uint8


@pytest.mark.runtime
def test_dataset_module_is_tf_free():
    import subprocess

    code = (
        "import sys, edge_runtime.evaluation.dataset; "
        "assert not any(m.split('.')[0] in ('tensorflow', 'keras') for m in sys.modules)"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
