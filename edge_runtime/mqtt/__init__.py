"""MQTT out of `edge-infer predict --mqtt URL`: label events, results and snapshots for Home
Assistant and anything else that speaks MQTT. `config` (the URL and options, pure),
`discovery` (topics and Home Assistant discovery payloads, pure), `publisher` (the broker
connection and its bounded queue: the only importer of paho-mqtt), `sink` (a run's records in).
paho-mqtt is imported only when a publisher is made: `pip install "edge-multilabel[mqtt]"`."""

from .config import MqttConfig

__all__ = ["MqttConfig"]
