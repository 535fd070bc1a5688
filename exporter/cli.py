"""`edge-export`: the thin CLI over `exporter.export`."""

from __future__ import annotations

import os
import sys

import click

from edge_runtime import atomic
from edge_runtime.cli.kit import config_default
from edge_runtime.errors import EdgeError
from edge_runtime.inference.backend import BACKENDS

from .config import ExportConfig
from .model_metadata import ModelInfo
from .modes import QuantMode, WeightRounding, WeightScales


def _default(name: str):
    return config_default(ExportConfig, name)


EPILOG = """\b
Examples:
  edge-export runs/shapes --quant int8 --out shapes.tflite
  edge-export runs/shapes --quant auto --out shapes.tflite --json > export.json
  edge-export runs/shapes --quant int8 --min-agreement 0.99 --max-map-drop 0.01
  edge-export runs/shapes --min-map 0.8        # also fail when held-out mAP is below 0.8
  edge-export runs/shapes --score-calibration  # MediaPipe at threshold 0.5 = edge-infer

\b
Exit codes: 0 exported and passed the parity gate; 1 the gate failed (nothing is written at
--out, the JSON report says where it failed); 2 usage, model or data errors.
"""


@click.command(epilog=EPILOG, context_settings={"help_option_names": ["-h", "--help"]})
@click.argument("run_dir", type=click.Path(file_okay=False))
@click.option(
    "--quant",
    "quant",
    type=click.Choice([m.value for m in QuantMode]),
    default=_default("quant").value,
    show_default=True,
    help="Quantization mode; auto keeps the smallest that passes the gate.",
)
@click.option(
    "--out",
    "out",
    default=_default("out"),
    show_default=True,
    type=click.Path(dir_okay=False),
    help="Where the .tflite goes (written atomically, only if the gate passes).",
)
@click.option(
    "--data",
    type=click.Path(dir_okay=False),
    help="Labels CSV of calibration images (default: the run's training split).",
)
@click.option(
    "--val-data",
    type=click.Path(dir_okay=False),
    help="Labels CSV of held-out images for the gate (default: the run's validation split).",
)
@click.option(
    "--calibration-size",
    default=_default("calibration_size"),
    show_default=True,
    type=click.IntRange(1),
    help="Images for int8 calibration.",
)
@click.option(
    "--per-tensor",
    "weight_scales",
    flag_value=WeightScales.PER_TENSOR.value,
    help="int8: force one weight scale per tensor (the smaller file).",
)
@click.option(
    "--per-channel",
    "weight_scales",
    flag_value=WeightScales.PER_CHANNEL.value,
    help="int8: force one weight scale per output channel. Default: per tensor if that "
    "passes the gate, else per channel.",
)
@click.option(
    "--weight-rounding",
    type=click.Choice([r.value for r in WeightRounding]),
    default=_default("weight_rounding").value,
    show_default=True,
    help="int8: round each spatial kernel so its sum survives (sum-preserving), or every "
    "weight to its nearest step as the converter alone does (nearest).",
)
@click.option("--max-abs", type=float, help="Gate: per-label max |p_tflite - p_keras|.")
@click.option("--mean-abs", type=float, help="Gate: per-label mean |p_tflite - p_keras|.")
@click.option(
    "--min-agreement",
    type=click.FloatRange(0, 1),
    help="Gate: per-label fraction of equal yes/no decisions.",
)
@click.option("--max-map-drop", type=float, help="Gate: allowed mAP(Keras) - mAP(TFLite).")
@click.option(
    "--min-map",
    type=click.FloatRange(0, 1),
    help="Gate: the exported model's mAP on the held-out truth must reach this.",
)
@click.option(
    "--report",
    type=click.Path(dir_okay=False),
    help="Parity JSON report (default: <out stem>.parity.json).",
)
@click.option("--threads", type=click.IntRange(1), help="Interpreter threads for the parity run.")
@click.option(
    "--backend", type=click.Choice(list(BACKENDS)), help="Interpreter package for the parity run."
)
@click.option("--cache-dir", type=click.Path(file_okay=False), help="Cache decoded images here.")
@click.option(
    "--json", "as_json", is_flag=True, help="Print the result as one JSON object on stdout."
)
@click.option(
    "--name",
    "info_name",
    help="Model name in the standard metadata (default: the run folder's name).",
)
@click.option(
    "--description", "info_description", help="Model description in the standard metadata."
)
@click.option(
    "--model-version",
    "info_version",
    help="Model version in the standard metadata (default: the export time).",
)
@click.option("--author", "info_author", help="Author in the standard metadata.")
@click.option("--license", "info_license", help="Licence in the standard metadata.")
@click.option(
    "--score-calibration",
    is_flag=True,
    default=_default("score_calibration"),
    help="Standard score calibration mapping each label's threshold to 0.5: MediaPipe and the "
    "Task Library (one global threshold, 0.5) then decide exactly as edge-infer. Their scores "
    "become calibrated scores (0.5 at the threshold, 0 below), not probabilities.",
)
def export_cmd(
    run_dir,
    quant,
    out,
    data,
    val_data,
    calibration_size,
    weight_scales,
    weight_rounding,
    max_abs,
    mean_abs,
    min_agreement,
    max_map_drop,
    min_map,
    report,
    threads,
    backend,
    cache_dir,
    as_json,
    info_name,
    info_description,
    info_version,
    info_author,
    info_license,
    score_calibration,
):
    """Convert the Keras model in RUN_DIR (made by edge-train) to TFLite, embed labels,
    thresholds and preprocessing in the file, and prove its outputs match Keras."""
    from .export import ParityError, export

    try:
        config = ExportConfig(
            run_dir=run_dir,
            out=out,
            quant=QuantMode(quant),
            data=data,
            val_data=val_data,
            calibration_size=calibration_size,
            weight_scales=weight_scales or WeightScales.AUTO,
            weight_rounding=WeightRounding(weight_rounding),
            overrides={
                "max_abs": max_abs,
                "mean_abs": mean_abs,
                "min_agreement": min_agreement,
                "max_map_drop": max_map_drop,
                "min_map": min_map,
            },
            report=report,
            threads=threads,
            backend=backend,
            cache_dir=cache_dir,
            model_info=ModelInfo(
                info_name or "",
                info_description or "",
                info_version or "",
                info_author or "",
                info_license or "",
            ),
            score_calibration=score_calibration,
        )
    except ValueError as exc:
        raise click.UsageError(str(exc)) from None
    log = (lambda msg: None) if as_json else (lambda msg: click.echo(msg, err=True))
    try:
        result = export(config, log=log)
        code = 0
    except ParityError as exc:
        result, code = exc.result, 1
    except EdgeError as exc:
        click.echo(f"Error: {exc}", err=True)
        sys.exit(2)
    if as_json:
        click.echo(atomic.dumps(result.to_dict()))
    else:
        click.echo(result.summary())
    sys.exit(code)


def main() -> None:
    # TensorFlow's C++ start-up chatter would bury the report; set before TF is imported.
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    export_cmd(prog_name="edge-export")
