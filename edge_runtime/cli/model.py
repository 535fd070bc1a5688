"""`edge-infer info`, `verify` and `bench`: commands about a model file rather than images."""

from __future__ import annotations

import sys

import click

from .. import atomic
from ..errors import EdgeError
from ..inference.bench import BenchConfig
from .kit import Fatal, backend_option, config_default, load_classifier


@click.command(
    epilog="""\b
Examples:
  edge-infer info model.tflite
  edge-infer info model.tflite --json | jq .labels
Exit code 1 when the model was changed after export (see `edge-infer verify`).
"""
)
@click.argument("model", type=click.Path(dir_okay=False))
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
@backend_option
def info(model, as_json, backend) -> None:
    """Labels, thresholds, tensors, quantization, size, ops, standard metadata, integrity and
    embedded summaries of MODEL."""
    from ..modelfile.integrity import Status

    clf = load_classifier(model, backend=backend)
    meta = clf.metadata
    std = clf.standard_metadata
    try:
        integrity = clf.integrity()
    except EdgeError as exc:
        raise Fatal(str(exc)) from None

    def tensor(d: dict) -> dict:
        scale, zp = d["quantization"]
        return {
            "name": d["name"],
            "shape": [int(v) for v in d.get("shape_signature", d["shape"])],
            "dtype": d["dtype"].__name__,
            "quantization": {"scale": float(scale), "zero_point": int(zp)} if scale else None,
        }

    out = {
        "model": model,
        "size_bytes": clf.model_size,
        "backend": clf.backend,
        "labels": clf.labels,
        "thresholds": [round(float(t), 6) for t in clf.thresholds],
        "input": tensor(clf.input_details),
        "output": tensor(clf.output_details),
        "ops": clf.op_names(),
        "has_metadata": bool(meta),
        "arch": meta.get("arch"),
        "quantization": meta.get("quantization"),
        "preprocessing": meta.get("preprocessing"),
        "training": meta.get("training"),
        "parity": meta.get("parity"),
        "toolkit_version": meta.get("toolkit_version"),
        "standard_metadata": std,
        "integrity": integrity.to_dict(),
    }
    if as_json:
        click.echo(atomic.dumps(out))
    else:
        _print_info(out, meta, std, integrity)
    if integrity.status is Status.MODIFIED:
        sys.exit(1)


def _print_info(out: dict, meta: dict, std: dict | None, integrity) -> None:
    from ..modelfile.standard_metadata import describe as describe_standard

    click.echo(
        f"model       {out['model']} ({out['size_bytes'] / 1024:.1f} KiB, backend {out['backend']})"
    )
    if not meta:
        click.echo(
            "metadata    none (plain .tflite): generic labels, thresholds 0.5, raw 0-255 input assumed"
        )
    for key in ("input", "output"):
        t = out[key]
        q = (
            f", scale {t['quantization']['scale']:.6g} zero point {t['quantization']['zero_point']}"
            if t["quantization"]
            else ""
        )
        click.echo(f"{key:<11} {t['shape']} {t['dtype']}{q}")
    click.echo(f"arch        {out['arch'] or '-'}   quantization {out['quantization'] or '-'}")
    click.echo(f"{'label':<20} threshold")
    for label, thr in zip(out["labels"], out["thresholds"]):
        click.echo(f"{label[:20]:<20} {thr:.3f}")
    ops = out["ops"]
    click.echo(
        f"ops         {', '.join(sorted(set(ops))) + f' ({len(ops)} nodes)' if ops is not None else 'unavailable with this backend'}"
    )
    for key in ("training", "parity"):
        if isinstance(out[key], dict):
            click.echo(
                f"{key:<11} "
                + ", ".join(
                    f"{k}={_short_value(v)}"
                    for k, v in out[key].items()
                    if not isinstance(v, (dict, list))
                )
            )
    for line in describe_standard(std):
        click.echo(line)
    click.echo(f"integrity   {integrity.line()}")


def _short_value(value: object) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


@click.command(
    epilog="""\b
Examples:
  edge-infer bench model.tflite
  edge-infer bench model.tflite --image photo.jpg --runs 200 --warmup 10
  edge-infer bench model.tflite --threads-sweep 1,2,4 --json
"""
)
@click.argument("model", type=click.Path(dir_okay=False))
@click.option(
    "--image",
    type=click.Path(dir_okay=False),
    help="Time the whole path from this image (default: a synthetic frame at input size).",
)
@click.option(
    "--runs", type=click.IntRange(1), default=config_default(BenchConfig, "runs"), show_default=True
)
@click.option(
    "--warmup",
    type=click.IntRange(0),
    default=config_default(BenchConfig, "warmup"),
    show_default=True,
)
@click.option("--threads", type=click.IntRange(1, 64), help="Interpreter threads.")
@click.option("--threads-sweep", help="Comma-separated thread counts, e.g. 1,2,4.")
@backend_option
@click.option("--json", "as_json", is_flag=True, help="One JSON object per thread count.")
def bench(model, image, runs, warmup, threads, threads_sweep, backend, as_json) -> None:
    """Latency (min/mean/p50/p90/p99/max), init time, stage split and peak memory of MODEL."""
    from ..inference.bench import benchmark

    if threads_sweep:
        try:
            counts = [int(t) for t in threads_sweep.split(",") if t.strip()]
        except ValueError:
            raise click.BadParameter(
                "expected comma-separated integers", param_hint="--threads-sweep"
            ) from None
        if not counts or min(counts) < 1:
            raise click.BadParameter("thread counts must be >= 1", param_hint="--threads-sweep")
    else:
        counts = [threads]
    for t in counts:
        try:
            r = benchmark(model, image, runs=runs, warmup=warmup, threads=t, backend=backend)
        except EdgeError as exc:
            raise Fatal(str(exc)) from None
        if as_json:
            click.echo(atomic.dumps(r.to_dict()))
            continue
        lat = r.latency
        click.echo(f"{r.model} [{r.backend}, threads={r.threads or 'default'}] on {r.input}")
        click.echo(
            f"  init {r.init_ms:.2f} ms, warm-up {r.warmup}, {lat.runs} runs (ms): min {lat.min:.3f} "
            f"mean {lat.mean:.3f} p50 {lat.p50:.3f} p90 {lat.p90:.3f} p99 {lat.p99:.3f} max {lat.max:.3f}"
        )
        click.echo(
            "  stages (median ms): " + ", ".join(f"{k} {v:.3f}" for k, v in r.stages.items())
        )
        if r.peak_rss_mb is not None:
            click.echo(f"  peak memory {r.peak_rss_mb:.1f} MiB")


@click.command(
    epilog="""\b
Examples:
  edge-infer verify model.tflite
  edge-infer verify model.tflite --json
  edge-infer verify new.tflite && cp new.tflite /opt/app/model.tflite   # refuse a damaged copy
\b
Exit codes: 0 intact; 1 changed after export, or nothing recorded to check against
(a model exported before integrity records, or a plain .tflite); 2 not a readable model.
It detects damage and swapped parts, not an attacker who rewrites the record too: for that,
compare `sha256sum` of the whole file with a value published elsewhere."""
)
@click.argument("model", type=click.Path(dir_okay=False))
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
def verify(model, as_json) -> None:
    """Check MODEL's flatbuffer and label file against the SHA-256 recorded at export."""
    from ..modelfile.integrity import verify as verify_file

    try:
        report = verify_file(model)
    except EdgeError as exc:
        raise Fatal(str(exc)) from None
    if as_json:
        click.echo(atomic.dumps({"model": model, **report.to_dict()}))
    else:
        click.echo(f"{model}: {report.line()}")
    if not report.intact:
        sys.exit(1)
