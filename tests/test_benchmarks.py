"""The benchmark suite runs end to end and writes a complete report (no speed is asserted)."""

from __future__ import annotations

import json
import math
import numbers
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SECTIONS = ("machine", "latency", "end_to_end", "accuracy", "architectures")
CHARTS = ("latency_by_mode.png", "size_vs_map.png", "arch_comparison.png", "end_to_end.png")


def _numbers(obj) -> list[float]:
    if isinstance(obj, bool):
        return []
    if isinstance(obj, numbers.Number):
        return [float(obj)]
    if isinstance(obj, dict):
        return [v for x in obj.values() for v in _numbers(x)]
    if isinstance(obj, list):
        return [v for x in obj for v in _numbers(x)]
    return []


@pytest.mark.slow
def test_smoke_run_writes_complete_report(tmp_path):
    pytest.importorskip("tensorflow")
    pytest.importorskip("matplotlib")
    out = tmp_path / "results"
    proc = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "run.py"), "--smoke", "--out", str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert "[bench" in proc.stderr  # progress lines on stderr

    md = (out / "report.md").read_text()
    for heading in (
        "## Machine",
        "## 1. Latency",
        "## 2. End to end",
        "## 3. Size and accuracy",
        "## 4. Architectures",
    ):
        assert heading in md
    assert "benchmarks/run.py --smoke" in md  # the exact command
    for name in CHARTS:
        data = (out / name).read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 1000
    assert not list(out.glob("*.tmp")) and not list(
        out.glob(".*.tmp")
    )  # atomic writes left nothing

    report = json.loads((out / "report.json").read_text())
    for section in SECTIONS:
        assert report.get(section), section
        assert _numbers(report[section]), f"{section} has no numeric value"
    assert report["machine"]["cpu_model"] and report["machine"]["versions"]["numpy"]

    rows = report["latency"]["rows"]
    modes = {"float32", "float16", "dynamic", "int8"}
    for impl in ("keras_predict", "keras_call"):
        assert {r["batch"] for r in rows if r["impl"] == impl} == {1, 8}
    threads = report["latency"]["threads"]
    assert len(threads) >= 2  # a sweep, so the thread column is exercised
    for mode in modes:
        for t in threads:
            got = {(r["impl"], r["batch"]) for r in rows if r["mode"] == mode and r["threads"] == t}
            assert {
                ("predict", 1),
                ("bare", 1),
                ("scores", 8),
                ("bare", 8),
                ("predict/bare", 1),
                ("scores/bare", 8),
            } <= got, (mode, t)
    for r in rows:
        value = r.get("p50_ms", r.get("ratio_p50"))
        assert isinstance(value, float) and math.isfinite(value) and value > 0, r

    e2e = report["end_to_end"]["results"]
    assert {r["resolution"] for r in e2e} == {"1920x1080", "4000x3000"}
    for r in e2e:
        for k in ("predict_draft", "predict_full", "decode_draft", "decode_full"):
            assert r[k]["images_per_s"] > 0
        assert r["max_abs_score_diff"] >= 0

    acc = report["accuracy"]
    assert set(acc["modes"]) == modes | {"int8-per-channel"} and acc["keras"]["size_bytes"] > 0
    assert {r["gate"] for r in acc["modes"].values()} == {
        "not judged"
    }  # smoke exports once, gate relaxed
    for r in acc["modes"].values():
        for k in (
            "size_bytes",
            "map",
            "micro_f1",
            "macro_f1",
            "test_agreement_with_keras",
            "parity_min_agreement",
        ):
            assert isinstance(r[k], numbers.Number) and math.isfinite(r[k]), k

    archs = report["architectures"]
    assert set(archs) == {
        "seed",
        "compact",
    }  # the smoke profile's two (the full run adds mobilenetv3)
    for a in archs.values():
        assert (
            a["params"] > 0
            and a["macs"] > 0
            and a["int8_size_bytes"] > 0
            and a["int8_predict_p50_ms"] > 0
        )
        assert 0 <= a["keras_test_map"] <= 1


def test_camera_benchmark_runs_and_writes_its_report(fixture_models, tmp_path):
    """benchmarks/bm_camera.py (the README's camera frames/s before and after), tiny counts."""
    out = tmp_path / "results"
    cmd = [sys.executable, str(ROOT / "benchmarks" / "bm_camera.py"), str(fixture_models["int8"])]
    proc = subprocess.run(
        [*cmd, "--out", str(out), "--frames", "5", "--reps", "1", "--video-frames", "4"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    report = json.loads((out / "camera.json").read_text())
    assert report["camera"]["after_capture"] == "128x72"  # the 32x32 model's capture size
    assert all(v > 0 for v in report["camera"]["1_workers"]["fps_median"].values())
    md = (out / "camera.md").read_text()
    assert "bm_camera.py" in md and "| before |" in md
