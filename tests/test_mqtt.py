"""`edge-infer predict --mqtt`: label events, states, snapshots and Home Assistant discovery over
MQTT, against a real Mosquitto broker and a real paho subscriber (tests/mqtt_helpers.py).

The pure parts (URL parsing, topic ids, discovery payloads) are tested on their edge cases
first; then runs in this process (CliRunner) and in a child process (a SIGKILL, a broker
stopped and started again mid-run) are compared with what a subscriber received.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from mqtt_helpers import Broker, Subscriber, free_port, make_tls, wait_until
from PIL import Image

from edge_runtime.cli import main_group
from edge_runtime.errors import MqttError
from edge_runtime.inference.classifier import Classifier
from edge_runtime.mqtt.config import DEFAULT_QUEUE, MqttConfig, default_client_id
from edge_runtime.mqtt.discovery import (
    ModelIdentity,
    Topics,
    discovery_messages,
    label_ids,
    model_identity,
)

pytestmark = pytest.mark.runtime
SECRET = "s3cret-Pa55!word"
# Label events with K = M = 1 (every change of a label's presence is an event), decoded inline
# so that a line on stdin is classified at once.
EVENTS = ["--json", "--events", "--on-frames", "1", "--off-frames", "1", "--workers", "1"]


def paho():
    return pytest.importorskip("paho.mqtt.client", reason="paho-mqtt not installed")


def run(*args, env=None, input=None):
    return CliRunner().invoke(main_group, [str(a) for a in args], env=env, input=input)


def printed(result_stdout: str) -> list[dict]:
    return [json.loads(line) for line in result_stdout.splitlines()]


# ------------------------------------------------------------------------------ config (pure)
def test_url_parsing_ports_tls_and_credentials():
    c = MqttConfig.from_url("mqtt://broker.local")
    assert (c.host, c.port, c.tls, c.username, c.password) == (
        "broker.local",
        1883,
        False,
        None,
        None,
    )
    c = MqttConfig.from_url("mqtts://ha:8884")
    assert (c.port, c.tls) == (8884, True)
    assert MqttConfig.from_url("MQTTS://ha").port == 8883
    c = MqttConfig.from_url("mqtt://me%40home:p%3Ass@10.0.0.2:1884/")
    assert (c.username, c.password, c.host, c.port) == ("me@home", "p:ss", "10.0.0.2", 1884)
    env = {"EDGE_MQTT_USERNAME": "envuser", "EDGE_MQTT_PASSWORD": SECRET}
    c = MqttConfig.from_url("mqtt://host", env=env)  # both from the environment
    assert (c.username, c.password) == ("envuser", SECRET)
    c = MqttConfig.from_url("mqtt://urluser@host", env=env)  # the URL's user, the env's password
    assert (c.username, c.password) == ("urluser", SECRET)
    c = MqttConfig.from_url("mqtt://u:fromurl@host", env=env)  # the URL wins
    assert c.password == "fromurl"
    assert MqttConfig.from_url("mqtt://[::1]:1883").url == "mqtt://[::1]:1883"
    assert (
        MqttConfig.from_url("mqtt://h", client_id="cam-1").topic_prefix == "edge-multilabel/cam-1"
    )
    assert MqttConfig.from_url("mqtt://h", prefix="home/garden").topic_prefix == "home/garden"
    assert MqttConfig(host="h").queue_size == DEFAULT_QUEUE


@pytest.mark.parametrize(
    "url, options, problem",
    [
        ("http://host", {}, "must start with mqtt:// or mqtts://"),
        ("host:1883", {}, "must start with mqtt://"),
        ("mqtt://", {}, "is not a host name"),
        ("mqtt://host:99999", {}, "out of range"),
        ("mqtt://host:port", {}, "MQTT URL"),
        ("mqtt://host/topic", {}, "--mqtt-prefix"),
        ("mqtt://host?x=1", {}, "only mqtt[s]://"),
        ("mqtt://:pw@host", {}, "needs a user name"),
        ("mqtt://host", {"client_id": "has space"}, "client id"),
        ("mqtt://host", {"client_id": "x" * 65}, "client id"),
        ("mqtt://host", {"prefix": "home/+/cam"}, "must not contain"),
        ("mqtt://host", {"prefix": "home/#"}, "must not contain"),
        ("mqtt://host", {"prefix": "/home"}, "must not start or end"),
        ("mqtt://host", {"prefix": "a//b"}, "must not start or end"),
        ("mqtt://host", {"prefix": "$SYS/x"}, "must not start with '$'"),
        ("mqtt://host", {"discovery_prefix": ""}, "discovery prefix is empty"),
        ("mqtt://host", {"ca_file": "ca.pem"}, "use an mqtts:// URL"),
        ("mqtt://host", {"queue_size": 0}, "queue size"),
        ("mqtt://host", {"queue_size": 70000}, "queue size"),
        ("mqtt://host", {"results_every": -1.0}, "must not be negative"),
    ],
)
def test_bad_settings_are_one_line_errors(url, options, problem):
    with pytest.raises(MqttError) as err:
        MqttConfig.from_url(url, **options)
    assert problem in str(err.value) and "\n" not in str(err.value)


def test_the_password_is_never_shown():
    c = MqttConfig.from_url(f"mqtts://alice:{SECRET}@host")
    assert SECRET not in repr(c) and SECRET not in str(c)
    assert c.url == "mqtts://alice:***@host:8883"
    with pytest.raises(MqttError) as err:  # errors about a URL mask its password too
        MqttConfig.from_url(f"http://alice:{SECRET}@host")
    assert SECRET not in str(err.value) and "alice:***@host" in str(err.value)
    with pytest.raises(MqttError) as err:
        MqttConfig.from_url(f"mqtt://alice:{SECRET}@host:notaport")
    assert SECRET not in str(err.value)


def test_default_client_id_is_stable_and_safe():
    assert default_client_id("pi4.local", "photos") == "edge-pi4-photos"
    assert default_client_id("cam", "birds v2 (int8)") == "edge-cam-birds-v2-int8"
    assert len(default_client_id("h" * 100, "m")) == 64
    MqttConfig(host="h", client_id=default_client_id("ü-host", "ñ"))  # valid after cleaning


# ------------------------------------------------------------------------------ discovery (pure)
def test_label_ids_are_topic_safe_and_unique():
    ids = label_ids(["Cat", "cat!", "cat", "a b/c#", "", "+", "ünïcode", "x" * 80])
    assert ids[:4] == ["cat", "cat_2", "cat_3", "a_b_c"]
    assert ids[4] == "label_4" and ids[5] == "label_5"  # nothing usable left: by position
    assert len(set(ids)) == len(ids)
    assert all(i and all(c.isascii() and (c.isalnum() or c in "_-") for c in i) for i in ids)
    assert len(ids[7]) <= 48


def test_model_identity_from_metadata_with_fallbacks():
    std = {"name": "Garden birds", "version": "3"}
    assert model_identity(std, {"arch": "mobilenetv2"}, "file") == ModelIdentity(
        "Garden birds", "3", "mobilenetv2"
    )
    assert model_identity(None, {}, "photos") == ModelIdentity("photos", None, None)
    odd = {"name": "a\nb\x00c  " + "y" * 100, "version": 7}  # hostile metadata: one clean line
    ident = model_identity(odd, {"arch": ["not", "a", "string"]}, "f")
    assert ident.name.startswith("a bc") and len(ident.name) == 64 and "\n" not in ident.name
    assert ident.version is None and ident.arch is None


def test_discovery_follows_home_assistants_documented_schema():
    cfg = MqttConfig(host="h", client_id="cam1", prefix="home/cam1")
    labels = ["person", "Bird feeder"]
    model = ModelIdentity("Garden", "2", "compact")
    out = discovery_messages(cfg, labels, model, snapshot=True)
    topics = [t for t, _ in out]
    # <discovery_prefix>/<component>/<object_id>/config, object id = unique_id (best practice)
    assert topics == [
        "homeassistant/binary_sensor/cam1_label_person/config",
        "homeassistant/binary_sensor/cam1_label_bird_feeder/config",
        "homeassistant/image/cam1_snapshot/config",
    ]
    for topic, payload in out:
        assert topic.split("/")[2] == payload["unique_id"]
        assert payload["availability_topic"] == "home/cam1/availability"
        assert (payload["payload_available"], payload["payload_not_available"]) == (
            "online",
            "offline",
        )
        assert payload["device"] == {
            "identifiers": ["cam1"],
            "name": "Garden",
            "manufacturer": "edge-multilabel",
            "model": "compact",
            "sw_version": "2",
        }
        assert payload["origin"]["name"] == "edge-multilabel"
    person, bird, image = (p for _, p in out)
    assert person["name"] == "person" and bird["name"] == "Bird feeder"
    assert person["state_topic"] == "home/cam1/state/person"
    assert bird["state_topic"] == "home/cam1/state/bird_feeder"
    assert (person["payload_on"], person["payload_off"], person["qos"]) == ("ON", "OFF", 1)
    assert image["image_topic"] == "home/cam1/snapshot" and image["content_type"] == "image/jpeg"
    assert "state_topic" not in image
    without = discovery_messages(cfg, labels, ModelIdentity("Garden"), snapshot=False)
    assert [t for t, _ in without] == topics[:2]
    assert "sw_version" not in without[0][1]["device"]
    other = MqttConfig(host="h", client_id="cam1", discovery_prefix="ha-test")
    assert discovery_messages(other, labels, model, snapshot=False)[0][0].startswith("ha-test/")
    off = MqttConfig(host="h", discovery_prefix=None)
    assert discovery_messages(off, labels, model, snapshot=True) == []


# ------------------------------------------------------------------------------ CLI without a broker
def test_without_paho_the_error_says_how_to_install_it(fixture_models, tmp_path, monkeypatch):
    Image.new("RGB", (8, 8)).save(tmp_path / "a.png")
    monkeypatch.setitem(sys.modules, "paho", None)
    monkeypatch.setitem(sys.modules, "paho.mqtt", None)
    monkeypatch.setitem(sys.modules, "paho.mqtt.client", None)
    r = run(fixture_models["int8"], tmp_path / "a.png", "--mqtt", "mqtt://127.0.0.1:1")
    assert r.exit_code == 2
    assert r.stderr.strip() == 'Error: --mqtt needs paho-mqtt: pip install "edge-multilabel[mqtt]"'


def test_mqtt_options_need_mqtt_and_bad_urls_exit_2(fixture_models, tmp_path):
    Image.new("RGB", (8, 8)).save(tmp_path / "a.png")
    r = run(fixture_models["int8"], tmp_path / "a.png", "--mqtt-queue", "5")
    assert r.exit_code == 2 and "--mqtt-queue needs --mqtt URL" in r.stderr
    r = run(fixture_models["int8"], tmp_path / "a.png", "--mqtt", f"http://u:{SECRET}@h")
    assert r.exit_code == 2 and "must start with mqtt://" in r.stderr
    assert SECRET not in r.output and "Traceback" not in r.output


# ------------------------------------------------------------------------------ with a broker
@pytest.fixture
def broker(tmp_path):
    paho()
    b = Broker(tmp_path / "broker")
    yield b
    b.kill()


@pytest.fixture(scope="module")
def clf(fixture_models) -> Classifier:
    return Classifier.from_file(fixture_models["float32"])


@pytest.fixture(scope="module")
def pictures(fixture_models, clf, tmp_path_factory) -> list[Path]:
    """The eight reference frames as PNGs, 0.png .. 7.png."""
    folder = tmp_path_factory.mktemp("pictures")
    paths = []
    for i, f in enumerate(np.load(fixture_models["float32"].parent / "reference_frames.npy")):
        Image.fromarray(f).save(folder / f"{i}.png")
        paths.append(folder / f"{i}.png")
    return paths


@pytest.fixture(scope="module")
def toggling(clf, pictures) -> list[Path]:
    """Two pictures whose present labels differ: alternating them makes events at every image."""
    present = [set(clf.predict(p).labels) for p in pictures]
    for i in range(len(pictures)):
        for j in range(len(pictures)):
            if present[i] != present[j]:
                return [pictures[i], pictures[j]]
    pytest.fail("the fixture frames all have the same labels")


def test_events_states_snapshots_and_discovery_reach_a_real_broker(
    broker, fixture_models, clf, pictures, tmp_path
):
    prefix = "test/cam"
    sub = Subscriber(broker.port, [f"{prefix}/#", "homeassistant/#"])
    shots = tmp_path / "shots"
    r = run(
        fixture_models["float32"],
        *pictures,
        *EVENTS,
        "--snapshot",
        shots,
        "--mqtt",
        broker.url,
        "--mqtt-client-id",
        "cam",
        "--mqtt-prefix",
        prefix,
    )
    assert r.exit_code == 0, r.output
    events = printed(r.stdout)
    assert events and any(e["state"] == "off" for e in events)
    topics = Topics(prefix)
    # Every printed event was published, in order, as the same JSON.
    wait_until(lambda: len(sub.on(topics.event)) >= len(events), what="every event")
    assert [json.loads(p) for p in sub.payloads(topics.event)] == events
    # One binary_sensor per label and the snapshot image, as the pure function makes them.
    std = clf.standard_metadata
    expected = discovery_messages(
        MqttConfig(host="x", client_id="cam", prefix=prefix),
        clf.labels,
        ModelIdentity(std["name"], std["version"], clf.metadata["arch"]),
        snapshot=True,
    )
    got = {m.topic: json.loads(m.payload) for m in sub.under("homeassistant/")}
    assert got == dict(expected)
    assert {p["device"]["name"] for p in got.values()} == {std["name"]}  # named from the model
    # Each label's state follows its events and rests on the last one. Every label's current
    # state is also published once after connecting (the first OFF, or a repeat of the last).
    for label in clf.labels:
        cfg = got[f"homeassistant/binary_sensor/cam_label_{label_ids([label])[0]}/config"]
        mine = [e["state"].upper() for e in events if e["label"] == label]
        states = [p.decode() for p in sub.payloads(cfg["state_topic"])]
        changes = [s for i, s in enumerate(states) if i == 0 or s != states[i - 1]]
        assert changes in (mine, ["OFF", *mine]) and len(states) == len(mine) + 1, (label, states)
    # The snapshots are the saved JPEG files, byte for byte.
    snaps = [Path(e["snapshot"]).read_bytes() for e in events if e["state"] == "on"]
    wait_until(lambda: len(sub.payloads(topics.snapshot)) >= len(snaps), what="snapshots")
    assert sub.payloads(topics.snapshot) == snaps
    wait_until(lambda: sub.payloads(topics.availability)[-1:] == [b"offline"], what="offline")
    assert sub.payloads(topics.availability) == [b"online", b"offline"]
    # Counted: each event, the state change it makes (one image sequence), each snapshot.
    assert (
        f"MQTT: {2 * len(events) + len(snaps)} published, 0 still queued at exit, "
        "0 dropped (queue full)" in r.stderr
    )
    sub.close()
    # Retained: a subscriber arriving later sees the configs, last states, last snapshot, offline.
    late = Subscriber(broker.port, [f"{prefix}/#", "homeassistant/#"])
    wait_until(lambda: len(late.under("homeassistant/")) == len(expected), what="retained configs")
    wait_until(lambda: late.payloads(topics.availability) == [b"offline"], what="retained offline")
    assert all(m.retain for m in late.messages) and not late.on(topics.event)
    assert late.payloads(topics.snapshot) == snaps[-1:]
    late.close()


def test_results_without_events_rate_limited(broker, fixture_models, pictures):
    sub = Subscriber(broker.port, ["res/#", "homeassistant/#"])
    common = ["--json", "--mqtt", broker.url, "--mqtt-prefix", "res"]
    r = run(
        fixture_models["int8"],
        *pictures,
        *common,
        "--mqtt-results-every",
        "0",
        "--mqtt-discovery",
        "off",
    )
    assert r.exit_code == 0, r.output
    wait_until(lambda: len(sub.on("res/result")) >= len(pictures), what="every result")
    assert [json.loads(p) for p in sub.payloads("res/result")] == printed(r.stdout)
    r = run(fixture_models["int8"], *pictures, *common, "--mqtt-results-every", "3600")
    assert r.exit_code == 0, r.output
    assert "MQTT: 1 published" in r.stderr  # the images are one sequence: one result an hour
    wait_until(lambda: len(sub.on("res/result")) == len(pictures) + 1, what="the one result")
    assert json.loads(sub.payloads("res/result")[-1]) == printed(r.stdout)[0]
    # No label entities without --events (their states come from the events): nothing to discover.
    assert sub.under("homeassistant/") == []
    sub.close()


def test_a_full_queue_drops_counts_and_says_so(fixture_models, toggling):
    paho()
    port = free_port()  # nothing listens there: every message waits, then the queue is full
    r = run(
        fixture_models["float32"],
        *(toggling * 3),
        *EVENTS,
        "--mqtt",
        f"mqtt://127.0.0.1:{port}",
        "--mqtt-queue",
        "2",
        "--mqtt-wait",
        "0.2",
    )
    assert r.exit_code == 0, r.output
    events = printed(r.stdout)
    # One image sequence: every event changes its label's state, so two messages an event.
    queued = 2 * len(events)
    assert "Warning: MQTT queue full (2 messages" in r.stderr
    assert (
        f"MQTT: 0 published, 2 still queued at exit, {queued - 2} dropped (queue full)" in r.stderr
    )


# ------------------------------------------------------------------------------ child processes
class Child:
    """`edge-infer` in a child process, image paths written to its stdin one line at a time;
    stdout and stderr collected by threads as they come."""

    def __init__(self, *args, env: dict | None = None) -> None:
        code = "import sys; from edge_runtime.cli import main; main(sys.argv[1:])"
        self.proc = subprocess.Popen(
            [sys.executable, "-c", code, *map(str, args)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env={**os.environ, **(env or {})},
        )
        self.out: list[str] = []
        self.err: list[str] = []
        self._threads = [
            threading.Thread(target=self._collect, args=(s, d), daemon=True)
            for s, d in ((self.proc.stdout, self.out), (self.proc.stderr, self.err))
        ]
        for t in self._threads:
            t.start()

    @staticmethod
    def _collect(stream, into: list[str]) -> None:
        for line in stream:
            into.append(line)

    def send(self, paths) -> None:
        for p in paths:
            self.proc.stdin.write(f"{p}\n")
        self.proc.stdin.flush()

    def events(self) -> list[dict]:
        return [json.loads(line) for line in list(self.out)]

    def finish(self, timeout: float = 60) -> int:
        if not self.proc.stdin.closed:
            self.proc.stdin.close()
        try:
            rc = self.proc.wait(timeout)
        finally:
            self.proc.kill()  # a no-op once it has exited
        for t in self._threads:
            t.join(5)
        return rc

    @property
    def stderr(self) -> str:
        return "".join(self.err)


def test_sigkill_leaves_the_last_will_and_home_assistant_birth_resends_discovery(
    broker, fixture_models, toggling
):
    sub = Subscriber(broker.port, ["kill/#", "ha-test/#"])
    child = Child(
        fixture_models["float32"],
        "-",
        *EVENTS,
        "--mqtt",
        broker.url,
        "--mqtt-prefix",
        "kill",
        "--mqtt-client-id",
        "killme",
        "--mqtt-discovery",
        "ha-test",  # another discovery prefix: configs and the birth topic move with it
    )
    try:
        wait_until(lambda: sub.payloads("kill/availability") == [b"online"], what="online")
        configs = 3  # one binary_sensor per label of the fixture model
        wait_until(lambda: len(sub.under("ha-test/binary_sensor/")) == configs, what="discovery")
        # Home Assistant (re)starting says `online` on <prefix>/status: configs come again.
        sub.client.publish("ha-test/status", "online", qos=1)
        wait_until(
            lambda: len(sub.under("ha-test/binary_sensor/")) >= 2 * configs,
            what="discovery after Home Assistant's birth message",
        )
        child.send(toggling[:1])
        wait_until(lambda: sub.on("kill/event"), what="an event")
        child.proc.send_signal(signal.SIGKILL)
        child.proc.wait(10)
        # The broker publishes the will for a client that vanished: retained, so it stays.
        wait_until(lambda: sub.payloads("kill/availability")[-1:] == [b"offline"], what="the will")
    finally:
        child.finish()
        sub.close()
    late = Subscriber(broker.port, ["kill/availability"])
    wait_until(lambda: late.on("kill/availability"), what="retained availability")
    assert [(m.payload, m.retain) for m in late.on("kill/availability")] == [(b"offline", True)]
    late.close()


def test_broker_stopped_and_started_mid_run_loses_nothing(broker, fixture_models, toggling):
    # A persistent session: the broker keeps what arrives for the subscriber while it is away.
    sub = Subscriber(broker.port, ["restart/#"], session="edge-test-restart")
    child = Child(
        fixture_models["float32"], "-", *EVENTS, "--mqtt", broker.url, "--mqtt-prefix", "restart"
    )
    try:
        child.send(toggling * 2)
        wait_until(lambda: len(sub.on("restart/event")) == len(child.events()) > 0, what="batch 1")
        broker.stop()
        before = len(child.events())
        child.send(toggling * 3)  # classified and printed while the broker is away
        wait_until(lambda: len(child.events()) > before, what="events while the broker is away")
        wait_until(lambda: "connection to" in child.stderr, what="the lost-connection warning")
        broker.start()
        child.send(toggling * 2)
        rc = child.finish()
    finally:
        child.proc.kill()
    events = child.events()
    assert rc == 0, child.stderr
    assert "MQTT connection to mqtt://127.0.0.1" in child.stderr and "lost" in child.stderr
    assert "0 still queued at exit, 0 dropped (queue full)" in child.stderr, child.stderr
    wait_until(
        lambda: len({bytes(p) for p in sub.payloads("restart/event")}) >= len(events),
        timeout=20,
        what="every event after the restart",
    )
    # QoS 1 is at-least-once: a message in flight when the broker went may come twice.
    got = list(dict.fromkeys(sub.payloads("restart/event")))
    assert [json.loads(p) for p in got] == events
    sub.close()


def test_tls_with_a_private_ca_and_a_password_that_is_never_printed(
    fixture_models, pictures, tmp_path
):
    paho()
    ca, cert, key = make_tls(tmp_path / "tls")
    passwords = tmp_path / "passwords"
    passwd = subprocess.run(
        ["mosquitto_passwd", "-c", "-b", str(passwords), "alice", SECRET], capture_output=True
    )
    if passwd.returncode != 0:
        pytest.skip("mosquitto_passwd is not available")
    broker = Broker(
        tmp_path / "broker",
        extra=f"allow_anonymous false\npassword_file {passwords}\n"
        f"cafile {ca}\ncertfile {cert}\nkeyfile {key}\n",
    )
    try:
        sub = Subscriber(broker.port, ["tls/#"], tls_ca=ca, auth=("alice", SECRET))
        url = f"mqtts://alice@127.0.0.1:{broker.port}"
        args = [fixture_models["int8"], *pictures, *EVENTS, "--mqtt-prefix", "tls"]
        r = run(*args, "--mqtt", url, "--mqtt-ca", ca, env={"EDGE_MQTT_PASSWORD": SECRET})
        assert r.exit_code == 0, r.output
        events = printed(r.stdout)
        wait_until(lambda: len(sub.on("tls/event")) >= len(events), what="events over TLS")
        assert [json.loads(p) for p in sub.payloads("tls/event")] == events, (
            sub.payloads("tls/event"),
            r.stdout,
        )
        assert "publishing to mqtts://alice:***@127.0.0.1" in r.stderr
        # A wrong password in the URL: refused, said on stderr, never shown.
        wrong = f"mqtts://alice:{SECRET}x@127.0.0.1:{broker.port}"
        bad = run(*args, "--mqtt", wrong, "--mqtt-ca", ca, "--mqtt-wait", "1")
        assert bad.exit_code == 0, bad.output
        assert "refused the connection (Not authorized)" in bad.stderr, bad.stderr
        assert "still queued at exit" in bad.stderr
        # Without the CA the broker's certificate is not trusted: a warning, never a crash.
        untrusted = run(
            *args, "--mqtt", url, "--mqtt-wait", "0.5", env={"EDGE_MQTT_PASSWORD": SECRET}
        )
        assert untrusted.exit_code == 0 and "Warning: MQTT" in untrusted.stderr
        for result in (r, bad, untrusted):
            assert SECRET not in result.output and "Traceback" not in result.output
        sub.close()
    finally:
        broker.kill()
