"""The connection to the broker: the one module that imports paho-mqtt.

`publish` never waits for the network: it appends to a bounded queue (`queue_size` messages,
`queue_bytes` bytes, counting those handed to paho and not yet acknowledged), refuses what does
not fit and counts it (`dropped`), and a sender thread hands the queue to paho, in order, while
connected. paho's network thread connects, reconnects with a growing delay (1 s doubling to
30 s), keeps every QoS 1 message until the broker acknowledges it and sends it again after a
reconnect.

Order is kept across reconnects, which matters for the retained label states (an old `ON`
arriving after a newer `OFF` would leave Home Assistant wrong): paho sends what it already held
only after the new connection's CONNACK, and anything given to it while connecting would
overtake that. So the sender hands nothing over until connected, and after a reconnect waits
until what paho held has been acknowledged. Then it publishes the retained `online` and the
discovery configs, drains the queue, and publishes every label's current state once more
(`announce`), so that Home Assistant holds the truth even when messages were dropped. The same
happens when Home Assistant announces itself on `<discovery prefix>/status`.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

from ..errors import MqttError
from .config import MqttConfig
from .discovery import OFFLINE, ONLINE, Topics

MIN_PAHO = (2, 0)
INSTALL_HINT = 'pip install "edge-multilabel[mqtt]"'
_BATCH = 64  # messages handed to paho per turn of the sender (the lock is not held meanwhile)


@dataclass(frozen=True)
class Message:
    topic: str
    payload: bytes
    retain: bool = False


@dataclass(frozen=True)
class DeliveryStats:
    published: int  # acknowledged by the broker
    unsent: int  # still waiting for the broker when the run ended (lost with the process)
    dropped: int  # refused because the queue was full


def import_paho():
    """paho.mqtt.client, or MqttError with the one line that says how to install it."""
    try:
        import paho.mqtt.client as mqtt
        from paho.mqtt import __version__ as version
    except ImportError:
        raise MqttError(f"--mqtt needs paho-mqtt: {INSTALL_HINT}") from None
    if tuple(int(p) for p in version.split(".")[:2] if p.isdigit()) < MIN_PAHO:
        raise MqttError(f"--mqtt needs paho-mqtt 2.0 or later (found {version}): {INSTALL_HINT}")
    return mqtt


class Publisher:
    """Publishes `Message`s at QoS 1 to the broker of `config`; see the module docstring.

    `header()` gives the messages that open every connection after `online` (the discovery
    configs), `states()` those that close the first drain (the current label states)."""

    def __init__(
        self,
        config: MqttConfig,
        header: Callable[[], list[Message]] = list,
        states: Callable[[], list[Message]] = list,
        *,
        on_problem: Callable[[str], None] | None = None,
        on_note: Callable[[str], None] | None = None,
    ) -> None:
        mqtt = import_paho()
        self.config = config
        self.topics = Topics(config.topic_prefix)
        self._header, self._states = header, states
        self._problem = on_problem or (lambda message: None)
        self._note = on_note or (lambda message: None)
        self._lock = threading.Lock()
        self._wake = threading.Condition(self._lock)
        self._queue: deque[Message] = deque()  # not yet handed to paho
        self._pending: dict[int, int] = {}  # mid -> bytes: handed to paho, not acknowledged
        self._control: set[int] = set()  # mids of announcements (outside the bound)
        self._acked_early: set[int] = set()  # acknowledged before publish() returned the mid
        self._bytes = 0  # payload bytes in the queue and pending
        self._published = self._dropped = 0
        self._connected = False
        self._resync = False  # reconnected: wait until what paho held is acknowledged
        self._announce_due = self._states_due = False
        self._closing = self._stop = False
        self._last_problem: str | None = None

        client = mqtt.Client(
            mqtt.CallbackAPIVersion.VERSION2, client_id=config.client_id, protocol=mqtt.MQTTv311
        )
        if config.username is not None:
            client.username_pw_set(config.username, config.password)
        if config.tls:
            try:
                client.tls_set(ca_certs=config.ca_file)
            except (OSError, ValueError) as exc:  # ssl.SSLError is an OSError
                raise MqttError(f"MQTT TLS set-up failed ({exc})") from None
        client.will_set(self.topics.availability, OFFLINE, qos=1, retain=True)
        client.reconnect_delay_set(min_delay=1, max_delay=30)
        client.on_connect = self._on_connect
        client.on_connect_fail = self._on_connect_fail
        client.on_disconnect = self._on_disconnect
        client.on_publish = self._on_publish
        client.on_message = self._on_message
        self._client = client
        self._sender = threading.Thread(target=self._send_loop, name="mqtt-send", daemon=True)

    # ----------------------------------------------------------------------------- life
    def start(self) -> None:
        """Connect in the background: the run starts at once, even with the broker away."""
        try:
            self._client.connect_async(self.config.host, self.config.port, self.config.keepalive)
        except (OSError, ValueError) as exc:
            raise MqttError(f"MQTT {self.config.url}: {exc}") from None
        self._sender.start()
        self._client.loop_start()

    def close(self) -> DeliveryStats:
        """Wait up to `config.wait` seconds for the queue to reach the broker (it may come back
        meanwhile), say `offline`, disconnect; the counts (what is left counts as unsent)."""
        deadline = time.monotonic() + self.config.wait
        with self._lock:
            self._closing = True
            while (self._queue or self._pending) and time.monotonic() < deadline:
                self._wake.wait(min(0.1, max(0.0, deadline - time.monotonic())))
            self._stop = True
            self._wake.notify_all()
            connected = self._connected
        self._sender.join(5)
        if connected:
            # A clean disconnect sends no last will: say `offline` ourselves.
            info = self._client.publish(self.topics.availability, OFFLINE, qos=1, retain=True)
            try:
                info.wait_for_publish(timeout=max(0.5, deadline - time.monotonic()))
            except (RuntimeError, ValueError):
                pass  # the connection went while waiting: the will says offline instead
        self._client.disconnect()
        self._client.loop_stop()
        return self.stats()

    def stats(self) -> DeliveryStats:
        with self._lock:
            return DeliveryStats(
                self._published, len(self._queue) + len(self._pending), self._dropped
            )

    # ----------------------------------------------------------------------------- publishing
    def publish(self, message: Message) -> bool:
        """Queue `message` (QoS 1) and return at once; False when the queue is full (counted)."""
        size = len(message.payload)
        cfg = self.config
        with self._lock:
            waiting = len(self._queue) + len(self._pending)
            if waiting >= cfg.queue_size or self._bytes + size > cfg.queue_bytes:
                self._dropped += 1
                first, held = self._dropped == 1, self._bytes
            else:
                self._queue.append(message)
                self._bytes += size
                self._wake.notify_all()
                return True
        if first:
            self._problem(
                f"MQTT queue full ({waiting} messages, {held:,} bytes waiting for "
                f"{cfg.url}): dropping new messages until the broker takes some; "
                "the count is in the summary"
            )
        return False

    def _send_loop(self) -> None:
        """Hand messages to paho in order, only while connected and resynchronised."""
        while True:
            with self._lock:
                while not self._stop and not (
                    self._connected
                    and not self._resync
                    and (self._announce_due or self._queue or self._states_due)
                ):
                    self._wake.wait()
                if self._stop:
                    return
                if self._announce_due:
                    self._announce_due, self._states_due = False, True
                    kind = "announce"
                elif self._queue:
                    batch = [self._queue.popleft() for _ in range(min(_BATCH, len(self._queue)))]
                    kind = "queue"
                else:
                    self._states_due = False
                    kind = "states"
            # Announcements are built now, from the state of this very moment.
            if kind == "announce":
                online = Message(self.topics.availability, ONLINE.encode(), retain=True)
                batch = [online, *self._header()]
            elif kind == "states":
                batch = self._states()
            counted = kind == "queue"
            # Never under our lock: paho calls on_publish holding its own lock.
            for message in batch:
                info = self._client.publish(
                    message.topic, message.payload, qos=1, retain=message.retain
                )
                self._track(info.mid, len(message.payload) if counted else None)

    def _track(self, mid: int, size: int | None) -> None:
        with self._lock:
            if mid in self._acked_early:  # the broker was quicker than this thread
                self._acked_early.discard(mid)
                if size is not None:
                    self._bytes -= size
                    self._published += 1
                self._wake.notify_all()
            elif size is None:
                self._control.add(mid)
            else:
                self._pending[mid] = size

    # ----------------------------------------------------------------------------- callbacks
    # These run on paho's network thread.
    def _on_publish(self, client, userdata, mid, reason_code, properties) -> None:
        with self._lock:
            size = self._pending.pop(mid, None)
            if size is not None:
                self._bytes -= size
                self._published += 1
            elif mid in self._control:
                self._control.discard(mid)
            else:
                self._acked_early.add(mid)
            if self._resync and not self._pending and not self._control:
                self._resync = False
            self._wake.notify_all()

    def _on_connect(self, client, userdata, flags, reason_code, properties) -> None:
        if reason_code.is_failure:
            self._report(f"MQTT {self.config.url} refused the connection ({reason_code})")
            return
        with self._lock:
            self._connected = True
            # paho sends what it held once this callback returns: new messages wait for it.
            self._resync = bool(self._pending or self._control)
            self._announce_due = True
            was_problem, self._last_problem = self._last_problem, None
            self._wake.notify_all()
        if was_problem:
            self._note(f"MQTT connected to {self.config.url}")
        if self.config.discovery_prefix is not None:
            client.subscribe(f"{self.config.discovery_prefix}/status", qos=1)

    def _on_message(self, client, userdata, message) -> None:
        # Home Assistant's birth message: it (re)started and wants the discovery configs again.
        if message.payload == b"online":
            with self._lock:
                self._announce_due = True
                self._wake.notify_all()

    def _on_connect_fail(self, client, userdata) -> None:
        # paho does not say why (refused, unreachable, TLS certificate not trusted): we cannot.
        self._report(
            f"MQTT: cannot connect to {self.config.url} (no broker there, network down, or "
            "TLS refused); retrying (1 s doubling to 30 s)"
        )

    def _on_disconnect(self, client, userdata, flags, reason_code, properties) -> None:
        with self._lock:
            was, self._connected = self._connected, False
            closing = self._closing
            self._wake.notify_all()
        if was and not closing:
            self._report(
                f"MQTT connection to {self.config.url} lost ({reason_code}); "
                "queueing and reconnecting (1 s doubling to 30 s)"
            )

    def _report(self, problem: str) -> None:
        """Each problem once until it changes or the connection comes back: no log flood."""
        with self._lock:
            if problem == self._last_problem:
                return
            self._last_problem = problem
        self._problem(problem)
