"""Topics and Home Assistant MQTT discovery payloads. Pure functions of the config and the model.

Layout under the topic prefix P (default `edge-multilabel/<client id>`):

    P/availability      `online` (retained) while connected; `offline` as last will and at exit
    P/event             one label event per message, the JSON `--json` prints (not retained)
    P/result            results of runs without --events, rate-limited (not retained)
    P/state/<label id>  `ON` / `OFF` (retained): the label's state from the events' hysteresis
    P/snapshot          the latest snapshot JPEG (retained), with --snapshot

Discovery follows Home Assistant's MQTT integration documentation ("MQTT Discovery", single
component payloads): one retained config per entity at `<discovery prefix>/<component>/
<object id>/config`, the object id being the entity's `unique_id` (the documented best
practice), each carrying the same `device` mapping so that the entities group as one device, an
`origin`, and the availability topic with its payloads.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from .. import __version__
from .config import MqttConfig

ON, OFF = "ON", "OFF"  # Home Assistant's binary_sensor defaults for payload_on / payload_off
ONLINE, OFFLINE = "online", "offline"  # and for payload_available / payload_not_available
ORIGIN = {"name": "edge-multilabel", "sw_version": __version__}


@dataclass(frozen=True)
class Topics:
    prefix: str

    @property
    def availability(self) -> str:
        return f"{self.prefix}/availability"

    @property
    def event(self) -> str:
        return f"{self.prefix}/event"

    @property
    def result(self) -> str:
        return f"{self.prefix}/result"

    @property
    def snapshot(self) -> str:
        return f"{self.prefix}/snapshot"

    def state(self, label_id: str) -> str:
        return f"{self.prefix}/state/{label_id}"


@dataclass(frozen=True)
class ModelIdentity:
    """What names the device in Home Assistant: the model's name and version."""

    name: str
    version: str | None = None
    arch: str | None = None


def model_identity(standard: dict | None, metadata: dict, fallback: str) -> ModelIdentity:
    """Name and version from the standard TFLite metadata (what `edge-export` writes from
    `--name`/`--version`), else `fallback` (the file's stem); the architecture from ours."""
    standard = standard or {}
    name = _clean(standard.get("name")) or _clean(fallback) or "edge-multilabel model"
    arch = metadata.get("arch")
    return ModelIdentity(
        name, _clean(standard.get("version")), arch if isinstance(arch, str) else None
    )


def label_ids(labels: Sequence[str]) -> list[str]:
    """One topic-safe id per label ([a-z0-9_-], the class Home Assistant allows in object ids),
    unique even when two labels differ only in case or punctuation ("Cat", "cat!" -> cat, cat_2)."""
    ids: list[str] = []
    taken: set[str] = set()
    for i, label in enumerate(labels):
        base = re.sub(r"[^a-z0-9_-]+", "_", str(label).lower()).strip("_")[:48] or f"label_{i}"
        lid, n = base, 2
        while lid in taken:
            lid, n = f"{base}_{n}", n + 1
        taken.add(lid)
        ids.append(lid)
    return ids


def device(config: MqttConfig, model: ModelIdentity) -> dict:
    """The `device` mapping shared by every entity: one device per client id."""
    dev = {
        "identifiers": [config.client_id],
        "name": model.name,
        "manufacturer": "edge-multilabel",
        "model": model.arch or "multi-label image classifier",
    }
    if model.version:
        dev["sw_version"] = model.version
    return dev


def discovery_messages(
    config: MqttConfig,
    labels: Sequence[str],
    model: ModelIdentity,
    *,
    snapshot: bool,
) -> list[tuple[str, dict]]:
    """(topic, payload) of every discovery config: a binary_sensor per label, and the snapshot
    as an `image` entity when snapshots are published. Empty when discovery is off."""
    if config.discovery_prefix is None:
        return []
    topics = Topics(config.topic_prefix)
    common = {
        "availability_topic": topics.availability,
        "payload_available": ONLINE,
        "payload_not_available": OFFLINE,
        "device": device(config, model),
        "origin": ORIGIN,
    }
    out = []
    for label, lid in zip(labels, label_ids(labels)):
        uid = f"{config.client_id}_label_{lid}"
        out.append(
            (
                f"{config.discovery_prefix}/binary_sensor/{uid}/config",
                {
                    "name": str(label),
                    "unique_id": uid,
                    "state_topic": topics.state(lid),
                    "payload_on": ON,
                    "payload_off": OFF,
                    "qos": 1,
                    **common,
                },
            )
        )
    if snapshot:
        uid = f"{config.client_id}_snapshot"
        out.append(
            (
                f"{config.discovery_prefix}/image/{uid}/config",
                {
                    "name": "Snapshot",
                    "unique_id": uid,
                    "image_topic": topics.snapshot,
                    "content_type": "image/jpeg",
                    **common,
                },
            )
        )
    return out


def _clean(value: object) -> str | None:
    """A printable one-line name of at most 64 characters, or None."""
    if not isinstance(value, str):
        return None
    # Control characters go, line breaks and tabs become spaces, runs of spaces one.
    kept = "".join(" " if c.isspace() else c for c in value if c.isprintable() or c.isspace())
    text = " ".join(kept.split())[:64]
    return text or None
