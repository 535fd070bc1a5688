"""The watch: each write handed out once (rewritten, slow-written, retried), vanished files
forgotten, OS notification and polling alike, and SIGTERM mid-watch losing nothing.

Real files, a real folder, the real CLI (in-process and as a subprocess); runs in every
environment (without watchdog the watch polls, and the notification case skips).
"""

from __future__ import annotations

import io
import json
import os
import signal
import threading
import time
from pathlib import Path

import pytest
from PIL import Image
from test_runtime_live import _subprocess, clf, errors, finish, frames, rows, run, scores_of  # noqa: F401 (fixtures)

from edge_runtime.live.watch import WatchConfig, Watcher

pytestmark = pytest.mark.runtime


def atomic_write(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def png_bytes(frame) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(frame).save(buf, "PNG")
    return buf.getvalue()


def collect(watcher: Watcher, seconds: float) -> list[Path]:
    out, end = [], time.monotonic() + seconds
    while time.monotonic() < end:
        out += watcher.poll()
        time.sleep(0.02)
    return out


@pytest.mark.parametrize("notify", [True, False], ids=["notify", "polling"])
def test_watcher_hands_out_each_write_once_and_forgets_vanished(tmp_path, frames, notify):
    if notify:
        pytest.importorskip("watchdog")
    (tmp_path / "old.png").write_bytes(png_bytes(frames[0]))
    with Watcher(WatchConfig(str(tmp_path), settle=0.1, interval=0.02, notify=notify)) as w:
        assert w.mode == ("inotify" if notify else "polling")
        latest = tmp_path / "latest.png"
        atomic_write(latest, png_bytes(frames[1]))
        assert collect(w, 0.5) == [latest]
        assert collect(w, 0.3) == []  # one write, one hand-out
        atomic_write(latest, png_bytes(frames[2]))  # rewritten by rename
        assert collect(w, 0.5) == [latest]
        latest.write_bytes(png_bytes(frames[3]))  # rewritten in place
        (tmp_path / "notes.txt").write_text("not an image")
        assert collect(w, 0.5) == [latest]
        assert w.ignored == 1
        for p in tmp_path.iterdir():
            p.unlink()
        collect(w, 0.2)
        assert w.tracked == 0  # vanished files are forgotten


def watch_started(monkeypatch) -> threading.Event:
    """Set once the CLI's watch is running (files written before it are, rightly, not new)."""
    from edge_runtime.live.runner import Runner

    started, original = threading.Event(), Runner.watch

    def watch(self, *args, **kwargs):
        started.set()
        return original(self, *args, **kwargs)

    monkeypatch.setattr(Runner, "watch", watch)
    return started


def test_watch_cli_rewritten_slow_and_retried(clf, frames, fixture_models, tmp_path, monkeypatch):
    folder = tmp_path / "incoming"
    folder.mkdir()
    data = png_bytes(frames[4])
    started = watch_started(monkeypatch)

    def producer():
        assert started.wait(30)
        for i in (1, 2, 3):  # a timelapse rewriting latest.png
            atomic_write(folder / "latest.png", png_bytes(frames[i]))
            time.sleep(1.0)
        with open(folder / "slow.png", "wb") as fh:  # the writer pauses well past --settle
            fh.write(data[: len(data) // 2])
            fh.flush()
            time.sleep(1.0)
            fh.write(data[len(data) // 2 :])

    t = threading.Thread(target=producer)
    t.start()
    r = run(
        fixture_models["float32"],
        "--watch",
        folder,
        "--json",
        "--interval",
        "0.05",
        "--settle",
        "0.2",
        "--watch-timeout",
        "30",
        "--max-count",
        "5",
    )
    t.join()
    assert r.exit_code == 0, r.output  # the failed partial write was retried once complete
    out = rows(r)
    assert [Path(o["file"]).name for o in out] == ["latest.png"] * 3 + ["slow.png"]
    assert [list(o["scores"].values()) for o in out] == [
        scores_of(clf, frames[i]) for i in (1, 2, 3, 4)
    ]
    assert (
        len(errors(r)) == 1 and "slow.png" in errors(r)[0]
    )  # the attempt on the half-written file
    assert "done: 4 images" in r.stderr


def test_sigterm_mid_watch_writes_every_result(frames, fixture_models, tmp_path):
    proc = _subprocess(
        fixture_models["int8"],
        "--watch",
        tmp_path,
        "--json",
        "--interval",
        "0.05",
        "--settle",
        "0.1",
    )
    try:
        for _ in range(5):  # interpreter notices and a polling fallback warning may come first
            if "watching" in proc.stderr.readline():
                break
        else:
            pytest.fail("the watch did not start")
        for i in range(3):
            atomic_write(tmp_path / f"{i}.png", png_bytes(frames[i]))
        got = [proc.stdout.readline() for _ in range(3)]
        proc.send_signal(signal.SIGTERM)
        rest, err = finish(proc)
    finally:
        proc.kill()  # a no-op once it has exited; never leave a watch running
    assert proc.returncode == 0, err
    assert [Path(json.loads(line)["file"]).name for line in got] == [
        "0.png",
        "1.png",
        "2.png",
    ] and rest == ""
    assert "stopped: 3 images, 0 frames, 0 failed" in err
