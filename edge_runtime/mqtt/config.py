"""What `--mqtt URL` and its companions mean, checked before anything connects. Pure: no I/O.

The broker is a URL, `mqtt://[user[:password]@]host[:port]` or `mqtts://...` (TLS, port 8883 by
default). A password is better kept out of the command line (other users of the machine can read
it in `ps`): `$EDGE_MQTT_PASSWORD` (and `$EDGE_MQTT_USERNAME`) are read where the URL has none.
The password is never part of a repr, a log line or an error message: `MqttConfig.url` is the
URL with it masked.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from urllib.parse import unquote, urlsplit

from ..errors import MqttError

DEFAULT_PORT = 1883
DEFAULT_TLS_PORT = 8883
DEFAULT_QUEUE = 1000  # messages waiting for the broker's acknowledgement, at most
DEFAULT_QUEUE_BYTES = 64 << 20  # and at most this many payload bytes (snapshots are large)
MAX_QUEUE = 60000  # MQTT packet ids are 16-bit: every message in flight needs its own
DEFAULT_DISCOVERY = "homeassistant"  # Home Assistant's default discovery prefix
DEFAULT_RESULTS_EVERY = 1.0
DEFAULT_WAIT = 10.0
ENV_USERNAME = "EDGE_MQTT_USERNAME"
ENV_PASSWORD = "EDGE_MQTT_PASSWORD"

# Home Assistant's discovery topics allow only these in an object id; a client id made of them is
# also safe as an MQTT client id and inside unique ids.
_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")


@dataclass(frozen=True)
class MqttConfig:
    """A broker and how this device talks to it. Build it with `from_url`."""

    host: str
    port: int = DEFAULT_PORT
    tls: bool = False
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    client_id: str = "edge-multilabel"
    prefix: str = ""  # topic prefix; "" means edge-multilabel/<client_id>
    ca_file: str | None = None  # a private CA's certificate (PEM) for mqtts://
    queue_size: int = DEFAULT_QUEUE
    queue_bytes: int = DEFAULT_QUEUE_BYTES
    results_every: float = DEFAULT_RESULTS_EVERY  # runs without --events: seconds between results
    discovery_prefix: str | None = DEFAULT_DISCOVERY  # None: no Home Assistant discovery
    wait: float = DEFAULT_WAIT  # at the end, how long to wait for the queue to reach the broker
    keepalive: int = 30  # seconds: how soon a silent broker (cable pulled) counts as gone

    def __post_init__(self) -> None:
        if not self.host or any(c in self.host for c in "/ @"):
            raise MqttError(f"MQTT broker host {self.host!r} is not a host name or address")
        if not 1 <= self.port <= 65535:
            raise MqttError(f"MQTT port {self.port} is not in 1-65535")
        if not _ID.fullmatch(self.client_id):
            raise MqttError(
                f"MQTT client id {self.client_id!r} must be 1-64 letters, digits, '_' or '-'"
            )
        if self.password is not None and self.username is None:
            raise MqttError("an MQTT password needs a user name (mqtt://USER@host)")
        for name, topic in (
            ("topic prefix", self.prefix),
            ("discovery prefix", self.discovery_prefix),
        ):
            if topic:
                check_topic(topic, name)
        if self.discovery_prefix == "":
            raise MqttError("MQTT discovery prefix is empty (use None to turn discovery off)")
        if self.ca_file is not None and not self.tls:
            raise MqttError("a CA certificate is for TLS: use an mqtts:// URL")
        if not 1 <= self.queue_size <= MAX_QUEUE:
            raise MqttError(f"MQTT queue size {self.queue_size} is not in 1-{MAX_QUEUE}")
        if self.queue_bytes < 1:
            raise MqttError("MQTT queue bytes must be positive")
        if self.results_every < 0 or self.wait < 0 or self.keepalive < 5:
            raise MqttError("MQTT intervals must not be negative (keepalive at least 5 s)")

    @classmethod
    def from_url(cls, url: str, env: Mapping[str, str] | None = None, **options) -> MqttConfig:
        """The config for broker `url`; `env` supplies $EDGE_MQTT_USERNAME / $EDGE_MQTT_PASSWORD
        where the URL has none; `options` are the other fields (client_id, prefix, ...)."""
        env = env or {}
        try:
            parts = urlsplit(url)
            port = parts.port
        except ValueError as exc:  # a port that is not a number, or out of range
            raise MqttError(f"MQTT URL {_masked(url)}: {exc}") from None
        scheme = parts.scheme.lower()
        if scheme not in ("mqtt", "mqtts"):
            raise MqttError(f"MQTT URL {_masked(url)} must start with mqtt:// or mqtts:// (TLS)")
        if parts.path not in ("", "/") or parts.query or parts.fragment:
            raise MqttError(
                f"MQTT URL {_masked(url)}: only mqtt[s]://[user[:password]@]host[:port]; "
                "give the topic prefix with --mqtt-prefix"
            )
        username = unquote(parts.username) if parts.username else env.get(ENV_USERNAME) or None
        password = unquote(parts.password) if parts.password is not None else None
        if password is None and username is not None:
            password = env.get(ENV_PASSWORD) or None
        tls = scheme == "mqtts"
        return cls(
            host=parts.hostname or "",
            port=port or (DEFAULT_TLS_PORT if tls else DEFAULT_PORT),
            tls=tls,
            username=username,
            password=password,
            **options,
        )

    @property
    def url(self) -> str:
        """The broker's URL for messages: the user name shown, the password masked."""
        user = f"{self.username}{':***' if self.password else ''}@" if self.username else ""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{'mqtts' if self.tls else 'mqtt'}://{user}{host}:{self.port}"

    @property
    def topic_prefix(self) -> str:
        return self.prefix or f"edge-multilabel/{self.client_id}"


def check_topic(topic: str, name: str = "topic") -> None:
    """A topic this device may publish under: no wildcards, no empty levels at the ends."""
    if "+" in topic or "#" in topic or "\x00" in topic:
        raise MqttError(f"MQTT {name} {topic!r} must not contain '+', '#' or NUL")
    if topic.startswith("/") or topic.endswith("/") or "//" in topic:
        raise MqttError(f"MQTT {name} {topic!r} must not start or end with '/' nor hold '//'")
    if topic.startswith("$"):
        raise MqttError(f"MQTT {name} {topic!r} must not start with '$' (broker topics)")
    if len(topic.encode()) > 1024:
        raise MqttError(f"MQTT {name} is longer than 1024 bytes")


def default_client_id(hostname: str, model_name: str) -> str:
    """`edge-<host>-<model file stem>`: stable across restarts (Home Assistant keys its device
    and entities on it), different for two models on one host."""
    raw = f"edge-{hostname.split('.')[0]}-{model_name}"
    return (re.sub(r"[^A-Za-z0-9_-]+", "-", raw).strip("-") or "edge-multilabel")[:64]


def _masked(url: str) -> str:
    """`url` with any password replaced by ***, for error messages about a URL that did not parse."""
    return re.sub(r"(//[^/@:]*:)[^/@]*@", r"\1***@", url)
