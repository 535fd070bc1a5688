"""Counters and a latency histogram for `edge-infer serve`, in Prometheus' text format (0.0.4).

A handful of metrics do not need a client library: the format is lines of `name{labels} value`
under `# HELP` / `# TYPE` headers, histogram buckets cumulative with `le` bounds ending at
`+Inf`. `Metrics` is updated by the request threads under one lock; `render` is pure.
"""

from __future__ import annotations

import bisect
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

# Seconds: a small model on a Pi answers in milliseconds, a big image takes longer to decode.
BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


@dataclass(frozen=True)
class Snapshot:
    requests: Mapping[tuple[str, int], int]  # (endpoint, status code) -> count
    errors: Mapping[str, int]  # reason -> count
    present: Mapping[str, int]  # label -> images in which it was present
    buckets: Sequence[int]  # per bucket (not cumulative), the last one for > BUCKETS[-1]
    latency_sum: float
    in_flight: int
    model: Mapping[str, str]  # labels of the edge_model_info gauge


class Metrics:
    def __init__(self, labels: Sequence[str], model: Mapping[str, str]) -> None:
        self._lock = threading.Lock()
        self._requests: dict[tuple[str, int], int] = {}
        self._errors: dict[str, int] = {}
        self._present = dict.fromkeys(labels, 0)
        self._buckets = [0] * (len(BUCKETS) + 1)
        self._sum = 0.0
        self._in_flight = 0
        self._model = dict(model)

    def started(self) -> None:
        with self._lock:
            self._in_flight += 1

    def finished(self, endpoint: str, code: int, error: str | None = None) -> None:
        with self._lock:
            self._in_flight -= 1
            key = (endpoint, code)
            self._requests[key] = self._requests.get(key, 0) + 1
            if error is not None:
                self._errors[error] = self._errors.get(error, 0) + 1

    def classified(self, seconds: float, labels: Sequence[str]) -> None:
        with self._lock:
            self._buckets[bisect.bisect_left(BUCKETS, seconds)] += 1
            self._sum += seconds
            for label in labels:
                self._present[label] += 1

    def snapshot(self) -> Snapshot:
        with self._lock:
            return Snapshot(
                dict(self._requests),
                dict(self._errors),
                dict(self._present),
                list(self._buckets),
                self._sum,
                self._in_flight,
                dict(self._model),
            )


def render(s: Snapshot) -> str:
    """The Prometheus text exposition of `s`."""
    out: list[str] = []

    def family(name: str, kind: str, help_text: str) -> None:
        out.append(f"# HELP {name} {help_text}")
        out.append(f"# TYPE {name} {kind}")

    family("edge_requests_total", "counter", "HTTP requests answered, by endpoint and status.")
    for (endpoint, code), n in sorted(s.requests.items()):
        out.append(f"edge_requests_total{_labels(endpoint=endpoint, code=str(code))} {n}")
    family("edge_errors_total", "counter", "Requests refused, by reason.")
    for reason, n in sorted(s.errors.items()):
        out.append(f"edge_errors_total{_labels(reason=reason)} {n}")
    family("edge_classify_seconds", "histogram", "Time to classify one image (decode + inference).")
    total = 0
    for bound, n in zip([*BUCKETS, None], s.buckets):
        total += n
        le = "+Inf" if bound is None else repr(float(bound))
        out.append(f"edge_classify_seconds_bucket{_labels(le=le)} {total}")
    out.append(f"edge_classify_seconds_sum {s.latency_sum!r}")
    out.append(f"edge_classify_seconds_count {total}")
    family("edge_label_present_total", "counter", "Classified images in which a label was present.")
    for label, n in s.present.items():
        out.append(f"edge_label_present_total{_labels(label=label)} {n}")
    family("edge_in_flight_requests", "gauge", "Requests being answered now.")
    out.append(f"edge_in_flight_requests {s.in_flight}")
    family("edge_model_info", "gauge", "The model served (always 1).")
    out.append(f"edge_model_info{_labels(**s.model)} 1")
    return "\n".join(out) + "\n"


def _labels(**pairs: str) -> str:
    return "{" + ",".join(f'{k}="{_escape(str(v))}"' for k, v in pairs.items()) + "}"


def _escape(value: str) -> str:
    # The format's three escapes in label values: backslash, double quote, line feed.
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
