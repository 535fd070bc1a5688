"""`MqttSink`: a run's records to MQTT, as one more `Sink` (see `live.sinks`) beside stdout.

Called on the runner's thread, it only builds messages and queues them (`Publisher.publish`
returns at once). A label's Home Assistant state is on while the label is on in any of the run's
sequences (each video, stream or camera has its own hysteresis; the image inputs share one).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from .. import atomic
from ..live.sinks import Item
from .config import MqttConfig
from .discovery import OFF, ON, ModelIdentity, Topics, discovery_messages, label_ids
from .publisher import DeliveryStats, Message, Publisher

_IMAGES = "<images>"  # the sequence every image input belongs to (as in the runner)


class MqttSink:
    """Publishes events (and their states and snapshots) or rate-limited results; see
    `discovery` for the topics. `close()` ends the connection and returns the counts."""

    def __init__(
        self,
        config: MqttConfig,
        labels: Sequence[str],
        model: ModelIdentity,
        *,
        events: bool,
        snapshots: bool = False,
        on_problem: Callable[[str], None] | None = None,
        on_note: Callable[[str], None] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.config, self.events = config, events
        self.topics = Topics(config.topic_prefix)
        self._ids = dict(zip(labels, label_ids(labels)))
        self._problem = on_problem or (lambda message: None)
        self._clock = clock
        self._last_result: dict[str, float] = {}
        # label id -> the sequences in which it is on. The lock makes a change and its message
        # one step, so the publisher's snapshot of every state (`_states`, taken on its sender
        # thread after a reconnect) is never older than a state message queued after it.
        self._on: dict[str, set[str]] = {lid: set() for lid in self._ids.values()}
        self._lock = threading.Lock()
        self._discovery = [
            Message(topic, atomic.dumps(payload).encode(), retain=True)
            # Label entities only with --events: their states come from the events' hysteresis.
            for topic, payload in discovery_messages(
                config, list(labels) if events else [], model, snapshot=events and snapshots
            )
        ]
        self.publisher = Publisher(
            config, self._header, self._states, on_problem=on_problem, on_note=on_note
        )
        self.publisher.start()

    def _header(self) -> list[Message]:
        return list(self._discovery)

    def _states(self) -> list[Message]:
        if not self.events:
            return []
        with self._lock:
            return [
                Message(self.topics.state(lid), (ON if where else OFF).encode(), True)
                for lid, where in self._on.items()
            ]

    # ----------------------------------------------------------------------------- Sink
    def event(self, record: dict, item: Item) -> None:
        publish = self.publisher.publish
        publish(Message(self.topics.event, atomic.dumps(record).encode()))
        lid = self._ids.get(record["label"])
        if lid is None:
            return
        on = record["state"] == "on"
        key = _IMAGES if item.frame is None else item.source
        with self._lock:
            where = self._on[lid]
            before = bool(where)
            if on:
                where.add(key)
            else:
                where.discard(key)
            if bool(where) != before:
                publish(Message(self.topics.state(lid), (ON if where else OFF).encode(), True))
        if on and record.get("snapshot"):
            self._snapshot(record["snapshot"])

    def result(self, record: dict, item: Item) -> None:
        if self.events:  # an events run publishes its events and states, not every result
            return
        key = _IMAGES if item.frame is None else item.source
        now = self._clock()
        last = self._last_result.get(key)
        if last is not None and now - last < self.config.results_every:
            return  # rate-limited by design: the next result supersedes this one
        self._last_result[key] = now
        self.publisher.publish(Message(self.topics.result, atomic.dumps(record).encode()))

    def close(self) -> DeliveryStats:
        return self.publisher.close()

    def stats(self) -> DeliveryStats:
        return self.publisher.stats()

    def _snapshot(self, path: str) -> None:
        try:
            with open(path, "rb") as fh:  # the runner wrote it (atomically) just before
                data = fh.read(self.config.queue_bytes + 1)
        except OSError as exc:
            self._problem(f"MQTT: cannot read snapshot {path} ({exc.strerror or exc})")
            return
        if len(data) > self.config.queue_bytes:
            self._problem(f"MQTT: snapshot {Path(path).name} is larger than the queue; not sent")
            return
        self.publisher.publish(Message(self.topics.snapshot, data, retain=True))
