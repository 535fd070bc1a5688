"""No silent failure: the verdict against chance, from synthetic scores to a model trained on shuffled labels."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from edge_runtime.evaluation.dataset import read_labels_csv
from trainer.fit.quality import assess, format_verdict


def _y(n=300, labels=4, seed=0):
    rng = np.random.default_rng(seed)
    return (rng.random((n, labels)) < np.array([0.5, 0.3, 0.15, 0.08])[:labels]).astype(np.int8)


def test_random_scores_have_not_learned_and_say_what_to_try():
    y = _y()
    q = assess(y, np.random.default_rng(1).random(y.shape), ["a", "b", "c", "d"])
    assert q["learned"] is False and q["verdict"] == "not_learned"
    assert abs(q["map"] - q["chance_map"]) < 0.1 and q["mean_lift"] < 0.2
    assert q["per_label"]["a"]["chance"] == pytest.approx(y[:, 0].mean())
    assert any("--weights" in t for t in q["advice"]) and any(
        "--init-from" in t for t in q["advice"]
    )
    assert "NOT learned" in format_verdict(q)
    assert json.loads(json.dumps(q)) == q  # JSON-ready as it is


def test_informative_scores_have_learned_and_one_label_at_chance_is_named():
    y = _y()
    rng = np.random.default_rng(2)
    scores = y + rng.normal(0, 0.3, y.shape)
    q = assess(y, scores, ["a", "b", "c", "d"])
    assert (
        q["learned"] is True
        and q["verdict"] == "learned"
        and q["not_learned"] == []
        and q["advice"] == []
    )
    scores[:, 3] = rng.random(len(y))  # label d: a coin toss
    q = assess(y, scores, ["a", "b", "c", "d"])
    assert (
        q["learned"] is True
        and q["not_learned"] == ["d"]
        and q["per_label"]["d"]["learned"] is False
    )
    assert "d (AP" in format_verdict(q) and q["advice"]


def test_label_without_validation_positive_is_not_judged():
    y = _y()
    y[:, 3] = 0
    q = assess(y, y + 0.1, ["a", "b", "c", "d"])
    assert q["per_label"]["d"] == {
        "ap": None,
        "chance": 0.0,
        "chance_p95": None,
        "lift": None,
        "learned": None,
    }
    assert q["learned"] is True and "d" not in q["not_learned"]


def _shuffled_csv(src_csv: Path, out: Path, seed: int = 0) -> Path:
    """The same images with their label sets shuffled across them: nothing left to learn."""
    t = read_labels_csv(src_csv)
    perm = np.random.default_rng(seed).permutation(len(t))
    lines = ["filename,labels"] + [
        f"{p}," + " ".join(n for n, v in zip(t.labels, t.y[i]) if v) for p, i in zip(t.paths, perm)
    ]
    out.write_text("\n".join(lines) + "\n")
    return out


@pytest.mark.slow
def test_shuffled_labels_warn_in_summary_log_and_manifest(tmp_path):
    """In process with click's runner (edge-train as a real process: test_trainer.py); stdout and
    stderr are kept apart, as a shell sees them. `--json` carries `result.to_dict()`, whose
    "quality" is the manifest's (test_trainer.py checks that JSON)."""
    from click.testing import CliRunner

    from trainer.cli import cli
    from trainer.demo.demo_data import DemoConfig, make_demo_dataset

    train_csv, _ = make_demo_dataset(
        DemoConfig(str(tmp_path / "d"), n_train=240, n_test=1, image_size=32, seed=4)
    )
    csv = _shuffled_csv(train_csv, tmp_path / "shuffled.csv")
    r = CliRunner().invoke(
        cli,
        [str(csv), "--out", str(tmp_path / "run"), "--arch", "compact"]
        + ["--input-size", "32", "--epochs", "4"],
    )
    assert r.exit_code == 0, r.stderr  # training worked; the model did not learn, and it says so
    assert "WARNING: the model has NOT learned" in r.stderr  # in the live log
    assert (
        "WARNING: the model has NOT learned" in r.stdout and "try:" in r.stdout
    )  # and in the summary
    m = json.loads((tmp_path / "run" / "manifest.json").read_text())
    assert m["quality"]["learned"] is False and m["quality"]["verdict"] == "not_learned"
    assert set(m["quality"]["per_label"]) == set(m["labels"])
    assert all({"ap", "chance", "learned"} <= set(v) for v in m["quality"]["per_label"].values())
