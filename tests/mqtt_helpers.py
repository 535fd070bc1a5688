"""A real Mosquitto broker and a real paho subscriber for the MQTT tests.

Mosquitto comes from Debian's package (`apt-get install mosquitto`; scripts/test.sh installs it
where it can and then sets $EDGE_REQUIRE_MOSQUITTO=1, so that a broker missing in CI fails the
run instead of skipping). Each broker listens on a free loopback port with its own config,
persistence folder and log; started as root, Mosquitto would drop to the `mosquitto` user, which
cannot write the test's folder, so it is told to stay the current user.
"""

from __future__ import annotations

import getpass
import os
import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest


def mosquitto_binary() -> str:
    """The mosquitto executable, or skip (fail where the test command installed it)."""
    found = shutil.which("mosquitto") or next(
        (p for p in ("/usr/sbin/mosquitto", "/usr/local/sbin/mosquitto") if os.access(p, os.X_OK)),
        None,
    )
    if found:
        return found
    message = "mosquitto is not installed (apt-get install mosquitto): MQTT broker tests skipped"
    if os.environ.get("EDGE_REQUIRE_MOSQUITTO") == "1":
        pytest.fail(message.replace("skipped", "required here"))
    pytest.skip(message)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until(condition: Callable[[], object], timeout: float = 10.0, what: str = "condition"):
    """Poll `condition` until it is truthy (returned) or fail after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.02)


class Broker:
    """`mosquitto -c FILE` on 127.0.0.1:`port`; `extra` lines go into the config (TLS, auth)."""

    def __init__(self, folder: Path, extra: str = "", port: int | None = None) -> None:
        self.binary = mosquitto_binary()
        self.folder = folder
        self.folder.mkdir(parents=True, exist_ok=True)
        self.port = port or free_port()
        self.conf = folder / "mosquitto.conf"
        self.conf.write_text(
            f"listener {self.port} 127.0.0.1\n"
            f"user {getpass.getuser()}\n"
            "persistence true\n"
            f"persistence_location {folder}/\n" + (extra or "allow_anonymous true\n")
        )
        self.proc: subprocess.Popen | None = None
        self.start()

    @property
    def url(self) -> str:
        return f"mqtt://127.0.0.1:{self.port}"

    def start(self) -> None:
        log = open(
            self.folder / "mosquitto.log", "ab"
        )  # the broker writes it; our handle closes below
        self.proc = subprocess.Popen(
            [self.binary, "-c", str(self.conf)], stdout=log, stderr=subprocess.STDOUT
        )
        log.close()

        def listening() -> bool:
            if self.proc.poll() is not None:
                pytest.fail(f"mosquitto exited: {(self.folder / 'mosquitto.log').read_text()}")
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                return True
            except OSError:
                return False

        wait_until(listening, 10, "mosquitto to listen")

    def stop(self) -> None:
        """SIGTERM: Mosquitto saves its sessions and retained messages, then exits."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(10)

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)


@dataclass(frozen=True)
class Received:
    topic: str
    payload: bytes
    retain: bool


class Subscriber:
    """A paho client subscribed (QoS 1) to `topics`, keeping every message received.

    `session` names a persistent session (clean_session False): the broker keeps the
    subscription and the messages for it while this client or the broker is away.
    """

    def __init__(
        self,
        port: int,
        topics=("#",),
        *,
        session: str | None = None,
        tls_ca: Path | None = None,
        auth: tuple[str, str] | None = None,
    ) -> None:
        import paho.mqtt.client as mqtt

        self.messages: list[Received] = []
        self._lock = threading.Lock()
        self.subscribed = threading.Event()
        client = mqtt.Client(
            mqtt.CallbackAPIVersion.VERSION2,
            client_id=session or "",
            clean_session=session is None,
        )
        if tls_ca is not None:
            client.tls_set(ca_certs=str(tls_ca))
        if auth is not None:
            client.username_pw_set(*auth)
        client.reconnect_delay_set(1, 2)

        def on_connect(c, userdata, flags, reason, properties):
            c.subscribe([(t, 1) for t in topics])

        def on_subscribe(c, userdata, mid, reasons, properties):
            self.subscribed.set()

        def on_message(c, userdata, msg):
            with self._lock:
                self.messages.append(Received(msg.topic, bytes(msg.payload), bool(msg.retain)))

        client.on_connect, client.on_subscribe, client.on_message = (
            on_connect,
            on_subscribe,
            on_message,
        )
        client.connect("127.0.0.1", port, keepalive=10)
        client.loop_start()
        self.client = client
        if not self.subscribed.wait(10):
            pytest.fail("the test subscriber could not subscribe")

    def on(self, topic: str) -> list[Received]:
        with self._lock:
            return [m for m in self.messages if m.topic == topic]

    def payloads(self, topic: str) -> list[bytes]:
        return [m.payload for m in self.on(topic)]

    def under(self, prefix: str) -> list[Received]:
        with self._lock:
            return [m for m in self.messages if m.topic.startswith(prefix)]

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def make_tls(folder: Path) -> tuple[Path, Path, Path]:
    """A throwaway CA and a server certificate for 127.0.0.1 made with openssl: (ca, cert, key)."""
    openssl = shutil.which("openssl")
    if openssl is None:
        pytest.skip("openssl is not installed: the TLS test skips")
    folder.mkdir(parents=True, exist_ok=True)
    ca, ca_key = folder / "ca.pem", folder / "ca.key"
    cert, key, csr = folder / "server.pem", folder / "server.key", folder / "server.csr"
    ext = folder / "ext.cnf"
    ext.write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\n")
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    for cmd in (
        [openssl, "req", "-x509", *ec, "-keyout", ca_key, "-out", ca, "-days", "2"]
        + ["-subj", "/CN=edge-multilabel test CA"],
        [openssl, "req", *ec, "-keyout", key, "-out", csr, "-subj", "/CN=localhost"],
        [openssl, "x509", "-req", "-in", csr, "-CA", ca, "-CAkey", ca_key, "-CAcreateserial"]
        + ["-out", cert, "-days", "2", "-extfile", ext],
    ):
        subprocess.run([str(c) for c in cmd], check=True, capture_output=True)
    return ca, cert, key
