"""Live sources: a camera, video files and network streams, as frames (arrays, no JPEG round trip).

- the Raspberry Pi camera through `picamera2` when it is importable (it comes from apt on
  Raspberry Pi OS), otherwise OpenCV's capture device N (a USB webcam, V4L2);
- video files (`clip.mp4`) and streams (`rtsp://...`, `http://.../stream.mjpg`) through OpenCV
  (the optional `video` extra: opencv-python-headless).

Colour order is settled HERE and only here: OpenCV hands out BGR, so each OpenCV frame is
converted to RGB exactly once, as it leaves the capture; picamera2 is asked for "BGR888", which
libcamera lays out as R, G, B bytes, i.e. an RGB array. Every frame then goes through
`preprocess.load_image` like a decoded file, so a frame and the same frame saved losslessly
(PNG) give identical scores.

A stream that drops mid-run is reopened up to `retries` times in a row (each reported through
`on_problem`); a file that ends simply ends. Nothing here prints: problems go to the callback,
fatal ones are `SourceError`.
"""

from __future__ import annotations

import os
import re
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import SourceError

VIDEO_EXTENSIONS = {
    ".mp4",
    ".m4v",
    ".mov",
    ".avi",
    ".mkv",
    ".webm",
    ".mpg",
    ".mpeg",
    ".ts",
    ".h264",
    ".mjpg",
    ".mjpeg",
    ".wmv",
    ".flv",
    ".3gp",
}
_URL = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.-]*://")
# an unreachable stream fails after this, instead of FFmpeg's default wait
_STREAM_TIMEOUT_MS = 10_000


def is_stream(item: str) -> bool:
    """True for a URL (rtsp://, http://, ...): read as a live stream."""
    return bool(_URL.match(item))


def is_video(item: str) -> bool:
    """True for a path with a video file extension."""
    return Path(item).suffix.lower() in VIDEO_EXTENSIONS


@dataclass(frozen=True)
class Sampling:
    """Which frames to classify: every `every`-th, at most `fps` a second, at most `max_frames`."""

    every: int = 1
    fps: float | None = None
    max_frames: int | None = None


@dataclass(frozen=True)
class Reconnect:
    """How long a live source (a stream, the camera) is held on to after it stops delivering."""

    retries: int = 3  # reopen attempts in a row before the source counts as lost
    delay: float = 1.0  # seconds before each attempt


@dataclass(frozen=True)
class Frame:
    """One frame: its source's name, index in the source (skipped frames count), time, RGB pixels.

    `time` is seconds into a video file, or the wall-clock ISO time for a camera or a stream.
    """

    source: str
    index: int
    time: float | str
    image: np.ndarray  # (height, width, 3) uint8 RGB at the capture's resolution

    def record(self) -> dict:
        return {"frame": self.index, "time": self.time}


def _cv2():
    # OpenCV and FFmpeg print multi-line warnings of their own for a missing camera or an
    # unreachable stream; our one-line SourceError says it instead. A user's setting wins.
    os.environ.setdefault("OPENCV_LOG_LEVEL", "OFF")
    os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")  # AV_LOG_QUIET
    try:
        import cv2
    except ImportError:
        raise SourceError(
            "video, streams and OpenCV cameras need OpenCV: pip install 'edge-multilabel[video]'"
        ) from None
    return cv2


def open_capture(target: str | int) -> Any:
    """An OpenCV `VideoCapture` (the seam tests replace with a fake of the same interface)."""
    cv2 = _cv2()
    if isinstance(target, str) and is_stream(target):
        params = [
            cv2.CAP_PROP_OPEN_TIMEOUT_MSEC,
            _STREAM_TIMEOUT_MS,
            cv2.CAP_PROP_READ_TIMEOUT_MSEC,
            _STREAM_TIMEOUT_MS,
        ]
        return cv2.VideoCapture(target, cv2.CAP_FFMPEG, params)
    return cv2.VideoCapture(target)


def import_picamera2() -> Any | None:
    """The `picamera2` module, or None where it is not installed (not a Pi, or a venv without
    --system-site-packages). The seam tests replace with a fake."""
    try:
        import picamera2
    except ImportError:
        return None
    return picamera2


class _OpenCV:
    """grab/retrieve over an OpenCV capture; `retrieve` converts BGR to RGB (the one place)."""

    def __init__(self, cap: Any) -> None:
        self.cap = cap

    def grab(self) -> bool:
        return bool(self.cap.grab())

    def retrieve(self) -> np.ndarray | None:
        ok, frame = self.cap.retrieve()
        if not ok or frame is None:
            return None
        if frame.ndim == 3 and frame.shape[2] == 3:
            return np.ascontiguousarray(frame[..., ::-1])  # BGR -> RGB, an exact permutation
        if frame.ndim == 3 and frame.shape[2] == 4:
            return np.ascontiguousarray(frame[..., [2, 1, 0]])  # BGRA -> RGB
        return frame  # greyscale: load_image makes it RGB

    def position(self) -> float | None:
        """Seconds into the video of the frame just grabbed (None when the capture cannot say)."""
        ms = self.cap.get(_cv2().CAP_PROP_POS_MSEC)
        return ms / 1000.0 if ms and ms > 0 else None

    def fps(self) -> float:
        return float(self.cap.get(_cv2().CAP_PROP_FPS) or 0.0)

    def release(self) -> None:
        self.cap.release()


class _PiCamera:
    """grab/retrieve over picamera2: a capture is a grab, the array is already RGB."""

    def __init__(self, module: Any, index: int) -> None:
        self.cam = module.Picamera2(index)
        config = self.cam.create_video_configuration(main={"format": "BGR888", "size": (1280, 720)})
        self.cam.configure(config)
        self.cam.start()
        self._frame: np.ndarray | None = None

    def grab(self) -> bool:
        self._frame = self.cam.capture_array("main")
        return self._frame is not None

    def retrieve(self) -> np.ndarray | None:
        return self._frame

    def position(self) -> float | None:
        return None

    def fps(self) -> float:
        return 0.0

    def release(self) -> None:
        self.cam.stop()
        self.cam.close()


class FrameSource:
    """Frames from a camera, a video file or a stream; iterate with `frames()`, then `close()`.

    Opening happens in the constructor so that a bad source fails at once (`SourceError`).
    `reconnect.retries` bounds the reopen attempts in a row after a live source stops delivering.
    """

    def __init__(
        self,
        target: str | int,
        *,
        camera: bool = False,
        sampling: Sampling = Sampling(),
        reconnect: Reconnect = Reconnect(),
        on_problem: Callable[[str], None] | None = None,
    ) -> None:
        self.target, self.camera, self.sampling = target, camera, sampling
        self.live = camera or (isinstance(target, str) and is_stream(target))
        self.name = f"camera:{target}" if camera else str(target)
        self.retries, self.retry_delay = reconnect.retries, reconnect.delay
        self.on_problem = on_problem or (lambda message: None)
        self.reconnects = 0  # times the source was reopened after a drop
        self.undecodable = 0  # frames grabbed that could not be decoded
        self.backend = ""
        self._capture = self._open()

    def _open(self):
        if self.camera:
            module = import_picamera2()
            if module is not None:
                try:
                    cap = _PiCamera(module, int(self.target))
                except (RuntimeError, IndexError, OSError, ValueError) as exc:
                    raise SourceError(f"{self.name}: cannot open the camera ({exc})") from None
                self.backend = "picamera2"
                return cap
        cap = open_capture(int(self.target) if self.camera else self.target)
        if not cap.isOpened():
            cap.release()
            what = (
                "no camera at this index (is one connected and enabled?)"
                if self.camera
                else "cannot open stream (unreachable, or not a video stream)"
                if self.live
                else "file not found"
                if not Path(str(self.target)).exists()
                else "cannot open video (unreadable or unsupported format)"
            )
            raise SourceError(f"{self.name}: {what}")
        self.backend = "opencv"
        return _OpenCV(cap)

    def close(self) -> None:
        if self._capture is not None:
            self._capture.release()
            self._capture = None

    def frames(self, stop: threading.Event | None = None) -> Iterator[Frame]:
        """Yield the sampled frames until the source ends, `max_frames`, or `stop` is set.

        Raises `SourceError` when a live source stays down after `retries` reopen attempts, or a
        video file yields no frame at all.
        """
        s = self.sampling
        period = 1.0 / s.fps if s.fps else 0.0
        next_due = 0.0
        index = kept = failures = 0
        start = time.monotonic()
        while (stop is None or not stop.is_set()) and (s.max_frames is None or kept < s.max_frames):
            cap = self._capture
            if cap is None or not cap.grab():
                if not self.live:
                    if index == 0:
                        raise SourceError(
                            f"{self.name}: cannot read video (no frame could be decoded)"
                        )
                    return  # end of the file
                failures += 1
                self._reopen(failures)
                continue
            failures = 0
            now = self._time(cap, index, start)
            t = now if isinstance(now, float) else time.monotonic() - start
            due = (index % s.every == 0) and (not period or t >= next_due - 1e-6)
            if due:
                image = cap.retrieve()
                if image is None:  # grabbed but not decodable (a corrupt packet): say so, go on
                    self.undecodable += 1
                    self.on_problem(f"{self.name}: frame {index} could not be decoded; skipped")
                else:
                    next_due = next_due + period if next_due + period > t else t + period
                    kept += 1
                    yield Frame(self.name, index, now, image)
            index += 1

    def _time(self, cap, index: int, start: float) -> float | str:
        if self.live:
            return datetime.now(timezone.utc).isoformat(timespec="milliseconds")
        pos = cap.position()
        if pos is None and index > 0:
            fps = cap.fps()
            pos = index / fps if fps > 0 else None
        return round(pos if pos is not None else 0.0, 6)

    def _reopen(self, failures: int) -> None:
        if failures > self.retries:
            self.close()
            raise SourceError(
                f"{self.name}: stream lost; gave up after {self.retries} reconnect attempts"
            )
        self.on_problem(
            f"{self.name}: stream dropped (no frame); reconnecting ({failures}/{self.retries})"
        )
        self.close()
        time.sleep(self.retry_delay)
        try:
            self._capture = self._open()
            self.reconnects += 1
        except SourceError as exc:
            self.on_problem(str(exc))
