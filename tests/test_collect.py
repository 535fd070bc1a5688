"""`--collect DIR`: the inputs near a threshold, within caps, in a folder the trainer reads.

Real parts: the fixture models and interpreters, real files, a video written with OpenCV where it
is installed; the camera is the fake with the real capture's interface (test_runtime_live.py).
"""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image
from test_runtime_live import FakeCapture, write_video

from edge_runtime.cli import main_group
from edge_runtime.evaluation.dataset import read_labels_csv
from edge_runtime.inference.classifier import Classifier
from edge_runtime.live import sources
from edge_runtime.live.collect import CollectConfig, Collector, logit, unsure
from edge_runtime.live.sinks import Item

pytestmark = pytest.mark.runtime


def run(*args):
    return CliRunner().invoke(main_group, [str(a) for a in args])


@pytest.fixture(scope="module")
def clf(fixture_models) -> Classifier:
    return Classifier.from_file(fixture_models["float32"])


@pytest.fixture(scope="module")
def pictures(fixture_models, tmp_path_factory) -> list[Path]:
    """PNGs at 64x48: the reference frames, and darker and blended ones (scores in between)."""
    ref = np.load(fixture_models["float32"].parent / "reference_frames.npy").astype(np.float32)
    made = list(ref) + [f * 0.6 for f in ref] + [(a + b) / 2 for a, b in zip(ref, ref[1:])]
    folder = tmp_path_factory.mktemp("pictures")
    paths = []
    for i, f in enumerate(made):
        img = Image.fromarray(np.clip(f, 0, 255).astype(np.uint8))
        paths.append(folder / f"p{i:02d}.png")
        img.resize((64, 48), Image.Resampling.NEAREST).save(paths[-1])
    return paths


def distances(clf: Classifier, paths) -> np.ndarray:
    """Each picture's smallest |logit(score) - logit(threshold)| over the labels."""
    scores = np.array([list(clf.predict(p).scores.values()) for p in paths])
    return np.abs(logit(scores) - logit(clf.thresholds)).min(axis=1)


def split_margin(d: np.ndarray) -> float:
    """A margin halfway between two neighbouring distances near the median: some in, some out."""
    s = np.unique(d)
    i = len(s) // 2
    return float((s[i - 1] + s[i]) / 2)


def read_rows(path: Path) -> list[dict]:
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


# ------------------------------------------------------------------------------ the rule
def test_unsure_is_within_margin_log_odds_inclusive_and_never_nan():
    t = [0.5, 0.2, 0.8]
    # logit(0.8) = log 4 = 1.386: 0.8 is 1.386 from 0.5, 0.5 is 1.386 from 0.2 and from 0.8
    assert unsure([0.8, 0.5, 0.5], t, 1.39).tolist() == [True, True, True]
    assert unsure([0.8, 0.5, 0.5], t, 1.38).tolist() == [False, False, False]
    assert unsure([0.5, 0.2, 0.7], t, 0.0).tolist() == [True, True, False]  # ties only
    assert unsure([math.nan, 0.2, 0.8], t, math.inf).tolist() == [False, True, True]
    # a low threshold: a confident 0.001 is far from 0.04 in log-odds (3.7), 0.02 is near (0.7)
    assert unsure([0.001, 0.02, 0.0], [0.04, 0.04, 0.04], 1.0).tolist() == [False, True, False]
    # exactly 0 or 1: only a tie or an infinite margin
    assert unsure([0.0, 1.0, 0.0], [0.0, 1.0, 1.0], 5.0).tolist() == [True, True, False]
    assert unsure([0.0, 1.0, 1.0], [0.5, 0.5, 1.0], math.inf).tolist() == [True, True, True]
    assert unsure(np.zeros((2, 3)), np.full(3, 0.25), 0.25).shape == (2, 3)  # a batch broadcasts
    with pytest.raises(ValueError):
        unsure([0.1, 0.2], t, 0.1)


@pytest.mark.parametrize(
    "bad",
    [
        dict(margin=-0.1),
        dict(margin=math.nan),
        dict(interval=-1),
        dict(max_items=0),
        dict(max_mb=0),
    ],
)
def test_config_refuses_impossible_values(bad):
    with pytest.raises(ValueError):
        CollectConfig("dir", **bad)


# ------------------------------------------------------------------------------ files
def test_collect_keeps_exactly_the_inputs_near_a_threshold(clf, pictures, fixture_models, tmp_path):
    d = distances(clf, pictures)
    margin = split_margin(d)
    expected = {p.name for p, di in zip(pictures, d) if di <= margin}
    assert 0 < len(expected) < len(pictures)
    out = tmp_path / "unsure"
    r = run(
        fixture_models["float32"], *pictures, "--json", "--collect", out, "--collect-margin", margin
    )
    assert r.exit_code == 0, r.output
    assert len(r.stdout.splitlines()) == len(pictures)  # the results are printed as ever
    rows = read_rows(out / "scores.csv")
    assert {Path(row["source"]).name for row in rows} == expected
    table = read_labels_csv(out / "labels.csv", labels=clf.labels)  # the trainer's reader
    assert len(table) == len(expected) and not table.skipped
    for path, y, row in zip(table.paths, table.y, rows):
        source = Path(row["source"])
        assert path.read_bytes() == source.read_bytes()  # the file itself, byte for byte
        pred = clf.predict(source)
        assert [label for label, v in zip(clf.labels, y) if v] == sorted(
            pred.labels, key=clf.labels.index
        )  # pre-filled with the model's decisions
        assert row["unsure"].split() == [
            label
            for label in clf.labels
            if abs(logit(pred.scores[label]) - logit(clf.thresholds[clf.labels.index(label)]))
            <= margin
        ]
        assert float(row[clf.labels[0]]) == pytest.approx(pred.scores[clf.labels[0]], abs=1e-6)
    assert f"collected {len(expected)} inputs" in r.stderr
    assert not [p for p in out.rglob("*") if p.name.endswith(".tmp")]  # nothing half-written

    # The same inputs again: identical bytes are never kept twice.
    r = run(fixture_models["float32"], *pictures, "--collect", out, "--collect-margin", margin)
    assert r.exit_code == 0 and "collected 0 inputs" in r.stderr
    assert len(read_labels_csv(out / "labels.csv")) == len(expected)


def test_the_run_threshold_is_the_one_judged(clf, pictures, fixture_models, tmp_path):
    """With --threshold 0.9, an input is in doubt near 0.9, and its row says what the run said."""
    margin = 2.0  # log-odds: scores from 0.55 to 0.985
    r = run(
        fixture_models["float32"],
        *pictures,
        "--json",
        "--threshold",
        "0.9",
        "--collect",
        tmp_path / "c",
        "--collect-margin",
        margin,
    )
    assert r.exit_code == 0, r.output
    printed = {Path(o["file"]).name: o for o in map(json.loads, r.stdout.splitlines())}
    rows = read_rows(tmp_path / "c" / "scores.csv")
    near = {
        n
        for n, o in printed.items()
        if any(abs(logit(s) - logit(0.9)) <= margin for s in o["scores"].values())
    }
    assert 0 < len(near) < len(printed)
    assert {Path(row["source"]).name for row in rows} == near
    table = read_labels_csv(tmp_path / "c" / "labels.csv", labels=clf.labels)
    for row, y in zip(rows, table.y):
        present = printed[Path(row["source"]).name]["labels"]
        assert [lab for lab, v in zip(clf.labels, y) if v] == sorted(present, key=clf.labels.index)


def test_caps_in_count_and_disk_are_kept_and_said(pictures, fixture_models, tmp_path):
    args = (fixture_models["float32"], *pictures, "--collect", tmp_path / "a")
    args += ("--collect-margin", "inf", "--collect-max", "2")
    r = run(*args)
    assert r.exit_code == 0, r.output
    assert len(read_labels_csv(tmp_path / "a" / "labels.csv")) == 2
    assert len(list((tmp_path / "a" / "images").iterdir())) == 2
    warnings = [line for line in r.stderr.splitlines() if line.startswith("Warning: collect:")]
    assert len(warnings) == 1 and "collecting no more (2 inputs kept)" in warnings[0]
    # The same run again into the same folder counts what is there: nothing more.
    r = run(*args)
    assert r.exit_code == 0 and "collected 0 inputs" in r.stderr

    size = pictures[0].stat().st_size
    mb = (2.5 * size) / 1e6  # room for two pictures of about this size, not three
    r = run(
        fixture_models["float32"],
        *pictures,
        "--collect",
        tmp_path / "b",
        "--collect-margin",
        "inf",
        "--collect-max-mb",
        mb,
    )
    assert r.exit_code == 0, r.output
    kept = list((tmp_path / "b" / "images").iterdir())
    assert 1 <= len(kept) <= 3 and sum(p.stat().st_size for p in kept) <= mb * 1e6
    assert "MB cap; collecting no more" in r.stderr


def test_an_earlier_collection_is_added_to_and_its_corrections_kept(
    clf, pictures, fixture_models, tmp_path
):
    out = tmp_path / "c"
    r = run(fixture_models["float32"], *pictures[:8], "--collect", out, "--collect-margin", "inf")
    assert r.exit_code == 0, r.output
    first = read_labels_csv(out / "labels.csv", labels=clf.labels)
    # a person corrects the first row
    lines = (out / "labels.csv").read_text().splitlines()
    cells = lines[1].split(",")
    cells[1] = "0" if cells[1] == "1" else "1"
    lines[1] = ",".join(cells)
    (out / "labels.csv").write_text("\n".join(lines) + "\n")
    r = run(fixture_models["float32"], *pictures[8:], "--collect", out, "--collect-margin", "inf")
    assert r.exit_code == 0, r.output
    after = read_labels_csv(out / "labels.csv", labels=clf.labels)
    assert len(after) == len(pictures) and after.paths[: len(first)] == first.paths
    assert after.y[0, 0] == 1 - first.y[0, 0] and (after.y[1 : len(first)] == first.y[1:]).all()
    assert len(read_rows(out / "scores.csv")) == len(pictures)
    assert len({p.name for p in after.paths}) == len(pictures)

    other = tmp_path / "other"
    other.mkdir()
    (other / "labels.csv").write_text("filename,cat,dog\nx.png,1,0\n")
    r = run(fixture_models["float32"], *pictures[:2], "--collect", other)
    assert (
        r.exit_code == 2 and r.stderr.count("\n") == 1 and "collect into another folder" in r.stderr
    )
    (tmp_path / "file").write_text("")
    r = run(fixture_models["float32"], *pictures[:2], "--collect", tmp_path / "file" / "sub")
    assert r.exit_code == 2 and "cannot write there" in r.stderr and "Traceback" not in r.output


def test_collect_options_need_collect_and_sane_values(fixture_models, pictures, tmp_path):
    r = run(fixture_models["float32"], pictures[0], "--collect-max", "3")
    assert r.exit_code == 2 and "--collect-max needs --collect DIR" in r.stderr
    for option, value in (("--collect-margin", "nan"), ("--collect-interval", "-1")):
        r = run(fixture_models["float32"], pictures[0], "--collect", tmp_path / "c", option, value)
        assert r.exit_code == 2 and "Traceback" not in r.output, (option, r.output)


# ------------------------------------------------------------------------------ frames
def test_camera_frames_are_rate_limited_by_the_clock_and_work_with_events(
    clf, fixture_models, monkeypatch, tmp_path
):
    ref = np.load(fixture_models["float32"].parent / "reference_frames.npy")
    frames = [np.asarray(Image.fromarray(f).resize((64, 48))) for f in ref]
    monkeypatch.setattr(sources, "import_picamera2", lambda: None)
    monkeypatch.setattr(
        sources, "open_capture", lambda target: FakeCapture([f[..., ::-1] for f in frames])
    )
    common = ("--camera", "--max-frames", len(frames), "--collect-margin", "inf")
    r = run(
        fixture_models["float32"],
        *common,
        "--collect",
        tmp_path / "a",
        "--collect-interval",
        "3600",
    )
    assert r.exit_code == 0, r.output
    rows = read_rows(tmp_path / "a" / "scores.csv")
    assert [(row["source"], row["frame"]) for row in rows] == [("camera:0", "0")]  # one an hour
    saved = np.asarray(Image.open(tmp_path / "a" / rows[0]["filename"]))
    assert np.array_equal(saved, frames[0])  # PNG: the very pixels the model saw

    # In an events run the collector still sees every frame's scores.
    r = run(
        fixture_models["float32"], *common, "--events", "--json",
        "--collect", tmp_path / "b", "--collect-interval", "0",
    )  # fmt: skip
    assert r.exit_code == 0, r.output
    assert all("state" in json.loads(line) for line in r.stdout.splitlines())  # events only
    assert [row["frame"] for row in read_rows(tmp_path / "b" / "scores.csv")] == [
        str(i) for i in range(len(frames))
    ]


def test_video_frames_are_rate_limited_by_the_video_time(fixture_models, tmp_path):
    ref = np.load(fixture_models["float32"].parent / "reference_frames.npy")
    video = write_video(tmp_path / "clip.avi", np.concatenate([ref, ref]))  # 10 fps, 1.6 s
    r = run(
        fixture_models["float32"], video, "--collect", tmp_path / "c",
        "--collect-margin", "inf", "--collect-interval", "0.25",
    )  # fmt: skip
    assert r.exit_code == 0, r.output
    rows = read_rows(tmp_path / "c" / "scores.csv")
    assert [int(row["frame"]) for row in rows] == [0, 3, 6, 9, 12, 15]
    assert [float(row["time"]) for row in rows] == pytest.approx([0, 0.3, 0.6, 0.9, 1.2, 1.5])


def test_the_python_api_is_the_same_sink(clf, pictures, tmp_path):
    problems = []
    col = Collector(
        CollectConfig(str(tmp_path / "c"), margin=math.inf, max_items=1),
        clf.labels,
        clf.thresholds,
        on_problem=problems.append,
    )
    for p in pictures[:3]:
        col.result(clf.predict(p).to_dict(), Item(str(p)))
    col.close()
    assert (col.saved, col.total) == (1, 1) and len(problems) == 1 and col.stopped
