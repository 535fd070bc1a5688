"""The `--mqtt*` options of `edge-infer predict` and the sink they make (`edge_runtime.mqtt`)."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import click

from ..errors import EdgeError
from ..mqtt.config import (
    DEFAULT_DISCOVERY,
    ENV_PASSWORD,
    ENV_USERNAME,
    MqttConfig,
    default_client_id,
)
from .kit import Fatal, check_needs, config_default, option_group

mqtt_options = option_group(
    click.option(
        "--mqtt",
        "mqtt_url",
        metavar="URL",
        help="Publish to the MQTT broker at mqtt://[USER[:PASS]@]HOST[:PORT] (mqtts:// for TLS). "
        f"User and password may come from ${ENV_USERNAME} / ${ENV_PASSWORD} instead.",
    ),
    click.option(
        "--mqtt-client-id",
        metavar="ID",
        help="MQTT client id, also Home Assistant's device id [default: edge-HOST-MODELNAME].",
    ),
    click.option(
        "--mqtt-prefix", metavar="TOPIC", help="Topic prefix [default: edge-multilabel/CLIENT_ID]."
    ),
    click.option(
        "--mqtt-ca",
        type=click.Path(exists=True, dir_okay=False),
        help="CA certificate (PEM) of a private CA for mqtts:// [default: the system's CAs].",
    ),
    click.option(
        "--mqtt-queue",
        type=click.IntRange(1, 60000),
        default=config_default(MqttConfig, "queue_size"),
        show_default=True,
        help="Messages kept while the broker is away; beyond it new ones are dropped and counted.",
    ),
    click.option(
        "--mqtt-results-every",
        type=click.FloatRange(0),
        default=config_default(MqttConfig, "results_every"),
        show_default=True,
        help="Runs without --events: publish at most one result per source every S seconds "
        "(0: every result).",
    ),
    click.option(
        "--mqtt-discovery",
        metavar="PREFIX",
        default=DEFAULT_DISCOVERY,
        show_default=True,
        help="Home Assistant discovery prefix; 'off' publishes no discovery configs.",
    ),
    click.option(
        "--mqtt-wait",
        type=click.FloatRange(0),
        default=config_default(MqttConfig, "wait"),
        show_default=True,
        help="At the end, wait up to S seconds for queued messages to reach the broker.",
    ),
)

# The options that mean something only with --mqtt URL.
_NEED_URL = (
    "mqtt_client_id",
    "mqtt_prefix",
    "mqtt_ca",
    "mqtt_queue",
    "mqtt_results_every",
    "mqtt_discovery",
    "mqtt_wait",
)


def mqtt_config(opt: dict, model_path: str) -> MqttConfig | None:
    """The MqttConfig the --mqtt options ask for (None without --mqtt); bad values exit 2."""
    if opt["mqtt_url"] is None:
        check_needs(_NEED_URL, "--mqtt URL")
        return None
    try:
        return MqttConfig.from_url(
            opt["mqtt_url"],
            env=os.environ,
            client_id=opt["mqtt_client_id"]
            or default_client_id(socket.gethostname(), Path(model_path).stem),
            prefix=opt["mqtt_prefix"] or "",
            ca_file=opt["mqtt_ca"],
            queue_size=opt["mqtt_queue"],
            results_every=opt["mqtt_results_every"],
            discovery_prefix=None if opt["mqtt_discovery"] == "off" else opt["mqtt_discovery"],
            wait=opt["mqtt_wait"],
        )
    except EdgeError as exc:
        raise Fatal(str(exc)) from None


def open_mqtt_sink(
    config: MqttConfig | None, clf, model_path: str, *, events: bool, snapshots: bool, warn
):
    """The MQTT sink of `config`, connecting in the background; None without one."""
    if config is None:
        return None
    from ..mqtt.discovery import model_identity
    from ..mqtt.sink import MqttSink

    try:
        sink = MqttSink(
            config,
            clf.labels,
            model_identity(clf.standard_metadata, clf.metadata, Path(model_path).stem),
            events=events,
            snapshots=snapshots,
            on_problem=warn,
            on_note=lambda message: click.echo(message, err=True),
        )
    except EdgeError as exc:
        raise Fatal(str(exc)) from None
    click.echo(f"publishing to {config.url} under {config.topic_prefix}/", err=True)
    return sink
