"""The device, live: frame sources, label events, parallel decoding, SIGTERM on a stream.

Real parts only: videos are written with OpenCV from labelled frames (lossless FFV1, so every
decoded frame equals the array written), streams are served over HTTP as MJPEG by a server in
the test, the camera is a fake with the real capture's interface. Tests needing OpenCV skip
without it (the tflite-runtime CI environment); the others run in every environment. The watch
has its own file, test_runtime_watch.py.
"""

from __future__ import annotations

import io
import json
import signal
import subprocess
import sys
import threading
import time
import types
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from edge_runtime.cli import main_group
from edge_runtime.inference.classifier import Classifier
from edge_runtime.live import sources
from edge_runtime.live.events import Hysteresis, State

pytestmark = pytest.mark.runtime
FPS = 10


def run(*args):
    return CliRunner().invoke(main_group, [str(a) for a in args])


def rows(result) -> list[dict]:
    return [json.loads(line) for line in result.stdout.splitlines()]


def errors(result) -> list[str]:
    return [line for line in result.stderr.splitlines() if line.startswith("Error:")]


@pytest.fixture(scope="module")
def frames(fixture_models) -> np.ndarray:
    """Eight labelled RGB frames at 64x48 (the model takes 32x32: the resize path is exercised)."""
    ref = np.load(fixture_models["float32"].parent / "reference_frames.npy")
    return np.stack(
        [np.asarray(Image.fromarray(f).resize((64, 48), Image.Resampling.NEAREST)) for f in ref]
    )


@pytest.fixture(scope="module")
def clf(fixture_models) -> Classifier:
    return Classifier.from_file(fixture_models["float32"])


def write_video(path: Path, rgb_frames, fps: float = FPS) -> Path:
    cv2 = pytest.importorskip("cv2")
    h, w = rgb_frames[0].shape[:2]
    out = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"FFV1"), fps, (w, h))
    assert out.isOpened()
    for f in rgb_frames:
        out.write(np.ascontiguousarray(f[..., ::-1]))  # OpenCV writes BGR
    out.release()
    return path


def scores_of(clf: Classifier, image) -> list[float]:
    return list(clf.predict(image).scores.values())


# ------------------------------------------------------------------------------ hysteresis
def test_hysteresis_turns_on_after_k_and_off_after_m():
    h = Hysteresis(["bird", "cat"], [0.5, 0.5], on_frames=3, off_frames=2)
    seq = [0.9, 0.1, 0.9, 0.9, 0.5, 0.9, 0.2, 0.9, 0.1, 0.1, 0.9]
    got = [(i, c.label, c.state) for i, s in enumerate(seq) for c in h.update([s, 0.0])]
    # one low frame resets the count; 0.5 counts as over (>= threshold); one low frame while on
    # is not enough to turn off; two are.
    assert got == [(4, "bird", State.ON), (9, "bird", State.OFF)]
    assert h.active == []


def test_hysteresis_labels_are_independent_and_scores_reported():
    h = Hysteresis(["a", "b"], [0.3, 0.8], on_frames=1, off_frames=1)
    assert [(c.label, c.state, c.score) for c in h.update([0.4, 0.7])] == [("a", State.ON, 0.4)]
    assert [(c.label, c.state) for c in h.update([0.2, 0.85])] == [
        ("a", State.OFF),
        ("b", State.ON),
    ]
    assert h.active == ["b"]
    with pytest.raises(ValueError):
        h.update([0.1])


# ------------------------------------------------------------------------------ predict_many
def test_predict_many_is_ordered_lazy_and_reports_failures(clf, frames, tmp_path):
    paths = []
    for i, f in enumerate(frames):
        Image.fromarray(f).save(tmp_path / f"{i}.png")
        paths.append(str(tmp_path / f"{i}.png"))
    (tmp_path / "bad.png").write_bytes(b"not an image")
    paths.insert(3, str(tmp_path / "bad.png"))
    expected = [scores_of(clf, p) for p in paths if "bad" not in p]
    for workers in (1, 2):
        pulled = []

        def source(pulled=pulled):
            for p in paths:
                pulled.append(p)
                yield p

        it = clf.predict_many(source(), workers=workers)
        first = next(it)
        assert len(pulled) <= 2 * workers + 1  # a bounded window ahead, not the whole input
        out = [first, *it]
        assert [o.source for o in out] == paths
        bad = out[3]
        assert bad.prediction is None and "not an image" in bad.error.problem
        got = [list(o.prediction.scores.values()) for o in out if o.error is None]
        assert got == expected
        assert all(o.prediction.source == o.source for o in out if o.error is None)


# ------------------------------------------------------------------------------ video files
def test_video_file_every_frame_classified_with_times(clf, frames, fixture_models, tmp_path):
    video = write_video(tmp_path / "clip.avi", frames)
    r = run(fixture_models["float32"], video, "--json")
    assert r.exit_code == 0, r.output
    out = rows(r)
    assert [o["frame"] for o in out] == list(range(len(frames)))
    assert [o["time"] for o in out] == pytest.approx([i / FPS for i in range(len(frames))])
    assert all(
        o["file"] == str(video) and set(o) == {"file", "scores", "labels", "frame", "time"}
        for o in out
    )
    assert [list(o["scores"].values()) for o in out] == [scores_of(clf, f) for f in frames]
    assert "done: 0 images, 8 frames, 0 failed" in r.stderr


def test_video_sampling_options(frames, fixture_models, tmp_path):
    video = write_video(tmp_path / "clip.avi", np.concatenate([frames, frames]))  # 16 frames, 1.6 s
    assert [
        o["frame"] for o in rows(run(fixture_models["int8"], video, "--json", "--every", "3"))
    ] == [0, 3, 6, 9, 12, 15]
    assert [
        o["frame"] for o in rows(run(fixture_models["int8"], video, "--json", "--fps", "4"))
    ] == [0, 3, 5, 8, 10, 13, 15]
    assert [
        o["frame"] for o in rows(run(fixture_models["int8"], video, "--json", "--max-frames", "2"))
    ] == [0, 1]
    r = run(fixture_models["int8"], video, "--csv", "--every", "8")
    assert r.stdout.splitlines()[0] == "file,frame,time,red,green,blue,labels"
    assert r.stdout.splitlines()[2].startswith(f"{video},8,0.8,")


def test_frame_and_lossless_file_give_identical_scores(clf, frames, tmp_path):
    video = write_video(tmp_path / "clip.avi", frames)
    src = sources.FrameSource(str(video))
    try:
        got = list(src.frames())
    finally:
        src.close()
    assert len(got) == len(frames)
    for fr, original in zip(got, frames):
        assert np.array_equal(fr.image, original)  # RGB, converted once in sources.py
        png = tmp_path / f"frame{fr.index}.png"
        Image.fromarray(fr.image).save(png)
        assert scores_of(clf, fr.image) == scores_of(clf, png)


def test_bad_sources_exit_2_with_one_line(fixture_models, tmp_path, monkeypatch):
    pytest.importorskip("cv2")
    (tmp_path / "broken.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42 not really a video" * 10)
    cases = [
        (tmp_path / "broken.mp4", "cannot open video"),
        (tmp_path / "missing.mp4", "file not found"),
        ("http://127.0.0.1:1/stream.mjpg", "cannot open stream"),
    ]
    for source, needle in cases:
        r = run(fixture_models["int8"], source, "--json")
        assert r.exit_code == 2, r.output
        lines = r.stderr.strip().splitlines()
        assert (
            len(lines) == 1 and lines[0].startswith(f"Error: {source}: ") and needle in lines[0]
        ), r.stderr
        assert r.stdout == ""
    monkeypatch.setattr(sources, "import_picamera2", lambda: None)
    monkeypatch.setattr(sources, "open_capture", lambda target: FakeCapture([], opened=False))
    r = run(fixture_models["int8"], "--camera", "--json")
    assert (
        r.exit_code == 2
        and r.stderr.strip()
        == "Error: camera:0: no camera at this index (is one connected and enabled?)"
    )


# ------------------------------------------------------------------------------ camera
class FakeCapture:
    """cv2.VideoCapture's interface as the runtime uses it, serving BGR frames like OpenCV."""

    def __init__(self, bgr_frames, opened: bool = True) -> None:
        self.frames, self.opened, self.i, self.released = list(bgr_frames), opened, 0, False
        self.props: dict[int, float] = {}  # what was set: a camera that honours every size

    def isOpened(self) -> bool:
        return self.opened

    def grab(self) -> bool:
        if self.i >= len(self.frames):
            return False
        self.i += 1
        return True

    def retrieve(self):
        return True, self.frames[self.i - 1].copy()

    def read(self):
        return (self.grab() and self.retrieve()) or (False, None)

    def get(self, prop) -> float:
        return self.props.get(prop, 0.0)

    def set(self, prop, value) -> bool:
        self.props[prop] = float(value)
        return True

    def release(self) -> None:
        self.released = True


def fake_picamera2(rgb_frames, configured: list | None = None):
    """picamera2's interface as the runtime uses it; each configuration goes into `configured`."""

    class Picamera2:
        def __init__(self, index=0):
            self.frames, self.started = list(rgb_frames), False

        def create_video_configuration(self, main):
            # picamera2 fills in the rest of a stream's configuration (its defaults, even sizes)
            return {"main": {"preserve_ar": True, **main}}

        def configure(self, config):
            assert config["main"]["format"] == "BGR888"  # libcamera's name for R,G,B byte order
            w, h = config["main"]["size"]
            assert w % 2 == 0 and h % 2 == 0  # picamera2 refuses odd sizes
            if configured is not None:
                configured.append(config)

        def start(self):
            self.started = True

        def capture_array(self, name="main"):
            return self.frames.pop(0)

        def stop(self):
            self.started = False

        def close(self):
            pass

    return types.SimpleNamespace(Picamera2=Picamera2)


def test_camera_through_opencv_and_picamera2(clf, frames, fixture_models, monkeypatch):
    expected = [scores_of(clf, f) for f in frames]
    captures = []

    def open_capture(target):
        assert target == 2
        captures.append(FakeCapture([f[..., ::-1] for f in frames]))
        return captures[-1]

    monkeypatch.setattr(sources, "import_picamera2", lambda: None)
    monkeypatch.setattr(sources, "open_capture", open_capture)
    r = run(fixture_models["float32"], "--camera", "2", "--json", "--max-frames", str(len(frames)))
    assert r.exit_code == 0, r.output
    out = rows(r)
    assert [o["file"] for o in out] == ["camera:2"] * len(frames) and [
        o["frame"] for o in out
    ] == list(range(len(frames)))
    assert [list(o["scores"].values()) for o in out] == expected
    assert all(
        "T" in o["time"] and o["time"].endswith("+00:00") for o in out
    )  # wall-clock ISO time
    assert captures[0].released

    monkeypatch.setattr(sources, "import_picamera2", lambda: fake_picamera2(frames))
    r = run(fixture_models["float32"], "--camera", "--json", "--max-frames", "3")
    assert r.exit_code == 0, r.output
    assert [list(o["scores"].values()) for o in rows(r)] == expected[:3]


def test_camera_is_asked_for_frames_near_twice_the_model_input(frames, fixture_models, monkeypatch):
    """The camera's scaler does the big shrink: picamera2's main stream and OpenCV's capture size
    follow the model (32x32 here: 128x72, 16:9), or --camera-size."""
    configured, captures = [], []

    def open_capture(target):
        captures.append(FakeCapture([f[..., ::-1] for f in frames]))
        return captures[-1]

    monkeypatch.setattr(sources, "import_picamera2", lambda: fake_picamera2(frames, configured))
    r = run(fixture_models["int8"], "--camera", "--json", "--max-frames", "2")
    assert r.exit_code == 0, r.output
    assert [c["main"]["size"] for c in configured] == [(128, 72)]
    r = run(fixture_models["int8"], "--camera", "--max-frames", "2", "--camera-size", "640x480")
    assert r.exit_code == 0, r.output
    assert configured[-1]["main"]["size"] == (640, 480)

    monkeypatch.setattr(sources, "import_picamera2", lambda: None)
    monkeypatch.setattr(sources, "open_capture", open_capture)
    r = run(fixture_models["int8"], "--camera", "--json", "--max-frames", "2")
    assert r.exit_code == 0, r.output
    width, height = sources._CAP_PROP_FRAME_WIDTH, sources._CAP_PROP_FRAME_HEIGHT
    assert (captures[-1].props[width], captures[-1].props[height]) == (128, 72)
    src = sources.FrameSource(0, camera=True, capture=(320, 180))
    try:
        assert src.size == (320, 180) and src.backend == "opencv"  # what the camera says it gives
    finally:
        src.close()
    for bad in ("640", "0x0", "641x480", "big"):
        r = run(fixture_models["int8"], "--camera", "--camera-size", bad)
        assert r.exit_code == 2 and "--camera-size" in r.stderr, (bad, r.output)
    try:  # where OpenCV is installed, its constants are the ones sources.py names
        import cv2
    except ImportError:
        return
    assert (cv2.CAP_PROP_FRAME_WIDTH, cv2.CAP_PROP_FRAME_HEIGHT) == (width, height)


@pytest.mark.parametrize(
    "model, capture",
    [
        ((96, 96), (384, 216)),
        ((224, 224), (832, 468)),
        ((32, 32), (128, 72)),
        ((160, 90), (320, 180)),  # already 16:9: exactly twice
        ((48, 200), (768, 432)),  # a tall input: the height decides
        ((1, 1), (64, 36)),
        ((2000, 1000), (1920, 1080)),  # capped
    ],
)
def test_capture_size_is_16_9_aligned_and_at_least_twice_the_input(model, capture):
    got = sources.capture_size(model)
    assert got == capture
    w, h = got
    assert w % 64 == 0 and h % 2 == 0 and w * 9 == h * 16
    if got != sources.MAX_CAPTURE:
        assert w >= 2 * model[0] and h >= 2 * model[1]


# ------------------------------------------------------------------------------ events
def test_events_and_snapshots_from_a_video(clf, frames, fixture_models, tmp_path):
    red = [s[0] >= 0.5 for s in (scores_of(clf, f) for f in frames)]
    hi, lo = frames[red.index(True)], frames[red.index(False)]
    seq = [lo, lo, hi, hi, hi, hi, lo, hi, lo, lo, lo, lo, lo, lo]
    video = write_video(tmp_path / "birds.avi", seq)
    shots = tmp_path / "shots"
    r = run(
        fixture_models["float32"],
        video,
        "--json",
        "--events",
        "--on-frames",
        "3",
        "--off-frames",
        "5",
        "--snapshot",
        shots,
    )
    assert r.exit_code == 0, r.output
    events = [e for e in rows(r) if e["label"] == "red"]
    assert [(e["state"], e["frame"]) for e in events] == [("on", 4), ("off", 12)]
    assert events[0]["time"] == pytest.approx(0.4) and events[0]["score"] >= 0.5
    assert set(events[0]) == {"file", "label", "state", "frame", "time", "score", "snapshot"}
    snap = Path(events[0]["snapshot"])
    assert snap.parent == shots and snap.suffix == ".jpg" and "red" in snap.name
    assert sorted(p.name for p in shots.iterdir()) == sorted(
        Path(e["snapshot"]).name for e in rows(r) if e["state"] == "on"
    )
    assert np.asarray(Image.open(snap)).shape == hi.shape
    r = run(fixture_models["float32"], video, "--snapshot", shots)
    assert r.exit_code == 2 and "add --events" in r.stderr


# ------------------------------------------------------------------------------ streams
class MJPEGServer:
    """An HTTP MJPEG stream: `per_connection` frames then the connection drops; after
    `connections` connections it answers 404 (the camera is gone); None = endless."""

    def __init__(self, rgb_frames, per_connection: int | None, connections: int) -> None:
        self.jpegs = []
        for f in rgb_frames:
            buf = io.BytesIO()
            Image.fromarray(f).save(buf, "JPEG", quality=95)
            self.jpegs.append(buf.getvalue())
        self.count = 0
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_GET(self):
                server.count += 1
                if server.count > connections:
                    self.send_error(404)
                    return
                self.send_response(200)
                self.send_header("Content-Type", "multipart/x-mixed-replace; boundary=frame")
                self.end_headers()
                i = 0
                try:
                    while per_connection is None or i < per_connection:
                        data = server.jpegs[i % len(server.jpegs)]
                        self.wfile.write(
                            b"--frame\r\nContent-Type: image/jpeg\r\nContent-Length: %d\r\n\r\n%s\r\n"
                            % (len(data), data)
                        )
                        self.wfile.flush()
                        i += 1
                        time.sleep(0.01)
                except (BrokenPipeError, ConnectionResetError):
                    pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/stream.mjpg"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self):
        self.httpd.shutdown()


def test_stream_drop_is_reported_and_retried_a_bounded_number_of_times(frames, fixture_models):
    pytest.importorskip("cv2")
    server = MJPEGServer(frames[:5], per_connection=5, connections=2)
    try:
        r = run(fixture_models["int8"], server.url, "--json", "--retries", "1")
    finally:
        server.close()
    assert r.exit_code == 1, r.output
    assert [o["frame"] for o in rows(r)] == list(range(10))  # both connections' frames, numbered on
    assert "stream dropped (no frame); reconnecting (1/1)" in r.stderr
    assert errors(r) == [f"Error: {server.url}: stream lost; gave up after 1 reconnect attempts"]
    assert "1 stream reconnects" in r.stderr and "Traceback" not in r.output


def _subprocess(*args):
    code = "import sys; from edge_runtime.cli import main; main(sys.argv[1:])"
    return subprocess.Popen(
        [sys.executable, "-c", code, *map(str, args)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def finish(proc: subprocess.Popen) -> tuple[str, str]:
    """The rest of stdout and stderr once the process ends. Not `communicate()`: it reads the raw
    pipes and would skip lines that `readline()` already buffered."""
    timer = threading.Timer(60, proc.kill)
    timer.start()
    try:
        rest, err = proc.stdout.read(), proc.stderr.read()  # stderr is small: no pipe deadlock
        proc.wait()
    finally:
        timer.cancel()
    return rest, err


def test_sigterm_mid_stream_writes_every_result(frames, fixture_models):
    pytest.importorskip("cv2")
    server = MJPEGServer(frames, per_connection=None, connections=1)  # endless
    proc = _subprocess(fixture_models["int8"], server.url, "--json")
    try:
        first = [proc.stdout.readline() for _ in range(5)]
        proc.send_signal(signal.SIGTERM)
        rest, err = finish(proc)
    finally:
        proc.kill()  # a no-op once it has exited; never leave a stream reader behind
        server.close()
    assert proc.returncode == 0, err
    lines = first + rest.splitlines(keepends=True)
    assert all(line.endswith("\n") for line in lines)
    out = [json.loads(line) for line in lines]
    assert [o["frame"] for o in out] == list(range(len(out)))
    assert f"stopped: 0 images, {len(out)} frames, 0 failed" in err, err


def test_without_opencv_a_video_is_a_one_line_error(fixture_models, tmp_path, monkeypatch):
    (tmp_path / "clip.mp4").write_bytes(b"\x00" * 64)
    monkeypatch.setitem(sys.modules, "cv2", None)  # `import cv2` now raises ImportError
    r = run(fixture_models["int8"], tmp_path / "clip.mp4")
    assert (
        r.exit_code == 2
        and r.stderr.strip()
        == "Error: video, streams and OpenCV cameras need OpenCV: "
        "pip install 'edge-multilabel[video]'"
    )


def test_mixed_inputs_keep_their_order_with_one_schema(frames, fixture_models, tmp_path):
    video = write_video(tmp_path / "clip.avi", frames[:3])
    Image.fromarray(frames[0]).save(tmp_path / "a.png")
    stdin_png = tmp_path / "b.png"
    Image.fromarray(frames[1]).save(stdin_png)
    r = CliRunner().invoke(
        main_group,
        [
            str(fixture_models["int8"]),
            str(tmp_path / "a.png"),
            str(video),
            "-",
            str(video),
            "--json",
        ],
        input=f"{stdin_png}\n",
    )
    assert r.exit_code == 0, r.output
    out = rows(r)
    assert [(Path(o["file"]).name, o.get("frame")) for o in out] == [
        ("a.png", None),
        ("clip.avi", 0),
        ("clip.avi", 1),
        ("clip.avi", 2),
        ("b.png", None),
        ("clip.avi", 0),
        ("clip.avi", 1),
        ("clip.avi", 2),
    ]
    table = run(fixture_models["int8"], video, tmp_path / "a.png")
    assert table.exit_code == 0 and "clip.avi#2 " in table.stdout and "a.png " in table.stdout


def test_an_undecodable_frame_is_reported_not_silently_dropped(
    clf, frames, fixture_models, monkeypatch
):
    class Glitchy(FakeCapture):
        def retrieve(self):
            return (False, None) if self.i == 2 else super().retrieve()

    monkeypatch.setattr(sources, "import_picamera2", lambda: None)
    monkeypatch.setattr(
        sources, "open_capture", lambda target: Glitchy([f[..., ::-1] for f in frames[:4]])
    )
    r = run(fixture_models["float32"], "--camera", "--json", "--max-frames", "3")
    assert r.exit_code == 0, r.output
    assert [o["frame"] for o in rows(r)] == [0, 2, 3]
    assert "Warning: camera:0: frame 1 could not be decoded; skipped" in r.stderr
    assert "1 undecodable frames skipped" in r.stderr


def test_events_over_image_files_form_one_sequence(clf, frames, fixture_models, tmp_path):
    for i, f in enumerate(frames):
        Image.fromarray(f).save(tmp_path / f"{i}.png")
    present = [set(clf.predict(f).labels) for f in frames]
    expected = []  # with K = M = 1 an event is exactly a change of a label's presence
    for i, now in enumerate(present):
        before = present[i - 1] if i else set()
        expected += [(i, label, "on") for label in clf.labels if label in now - before]
        expected += [(i, label, "off") for label in clf.labels if label in before - now]
    r = run(
        fixture_models["float32"],
        tmp_path,
        "--json",
        "--events",
        "--on-frames",
        "1",
        "--off-frames",
        "1",
        "--workers",
        "2",
    )
    assert r.exit_code == 0, r.output
    got = [(e["frame"], e["label"], e["state"]) for e in rows(r)]
    assert sorted(got) == sorted(expected) and expected
    assert all(Path(e["file"]).name == f"{e['frame']}.png" for e in rows(r))
