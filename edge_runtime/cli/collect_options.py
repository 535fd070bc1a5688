"""The `--collect*` options of `edge-infer predict` and the collector they make (`live.collect`)."""

from __future__ import annotations

import click

from ..live.collect import CollectConfig
from .kit import Fatal, check_needs, config_default, option_group

collect_options = option_group(
    click.option(
        "--collect",
        "collect_dir",
        type=click.Path(file_okay=False),
        help="Keep the inputs the model is unsure about in DIR, with a labels.csv of its decisions "
        "to correct and train on (edge-train DIR/labels.csv --init-from RUN).",
    ),
    click.option(
        "--collect-margin",
        type=click.FloatRange(0),
        default=config_default(CollectConfig, "margin"),
        show_default=True,
        help="Collect: keep an input when some label's score is within this many log-odds of its "
        "threshold (1: scores 0.27-0.73 around a threshold of 0.5; inf: every input).",
    ),
    click.option(
        "--collect-interval",
        type=click.FloatRange(0),
        default=config_default(CollectConfig, "interval"),
        show_default=True,
        help="Collect: at most one frame of a source every this many seconds (files: no limit).",
    ),
    click.option(
        "--collect-max",
        type=click.IntRange(1),
        default=config_default(CollectConfig, "max_items"),
        show_default=True,
        help="Collect: stop once DIR holds this many inputs (earlier runs' included).",
    ),
    click.option(
        "--collect-max-mb",
        type=click.FloatRange(0, min_open=True),
        default=config_default(CollectConfig, "max_mb"),
        show_default=True,
        help="Collect: stop before DIR's inputs exceed this many megabytes.",
    ),
)

# The options that mean something only with --collect DIR.
_NEED_DIR = ("collect_margin", "collect_interval", "collect_max", "collect_max_mb")


def collect_config(opt: dict) -> CollectConfig | None:
    """The CollectConfig the --collect options ask for (None without --collect DIR)."""
    if opt["collect_dir"] is None:
        check_needs(_NEED_DIR, "--collect DIR")
        return None
    try:
        return CollectConfig(
            opt["collect_dir"],
            margin=opt["collect_margin"],
            interval=opt["collect_interval"],
            max_items=opt["collect_max"],
            max_mb=opt["collect_max_mb"],
        )
    except ValueError as exc:  # what click's ranges let through (nan)
        raise click.UsageError(f"--collect: {exc}") from None


def open_collector(config: CollectConfig | None, clf, threshold: float | None, *, warn):
    """The `--collect` sink, or None; a folder it cannot use is a usage error (exit 2).
    `threshold` is --threshold (one for every label), else the model's own thresholds count."""
    from ..live.collect import CollectError, Collector

    if config is None:
        return None
    thresholds = [threshold] * len(clf.labels) if threshold is not None else clf.thresholds
    try:
        return Collector(config, clf.labels, thresholds, on_problem=warn)
    except CollectError as exc:
        raise Fatal(str(exc)) from None
