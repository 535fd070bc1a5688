"""`edge-infer eval`: the trainer's metrics of a model on a labelled CSV, with a --min-map gate."""

from __future__ import annotations

import sys

import click

from .. import atomic
from ..errors import EdgeError, first_line
from .kit import Fatal, backend_option, load_classifier


def _try_predict(clf, source, **kwargs):
    """(Prediction, None), or (None, the problem) for an input that cannot be classified."""
    try:
        return clf.predict(source, **kwargs), None
    except EdgeError as exc:
        return None, getattr(exc, "problem", str(exc))
    except (RuntimeError, ValueError, MemoryError) as exc:  # interpreter trouble on one input
        return None, f"{type(exc).__name__}: {first_line(exc)}"


@click.command(
    name="eval",
    epilog="""\b
Examples:
  edge-infer eval model.tflite test.csv
  edge-infer eval model.tflite test.csv --json > metrics.json
  edge-infer eval model.tflite test.csv --min-map 0.8   # exit 1 below 0.8 mAP
The CSV is `filename,labels` (labels joined by spaces) or one 0/1 column per label;
its labels must be the model's.""",
)
@click.argument("model", type=click.Path(dir_okay=False))
@click.argument("labels_csv", type=click.Path(dir_okay=False))
@click.option("--json", "as_json", is_flag=True, help="Print the metrics as one JSON object.")
@click.option(
    "--min-map",
    type=click.FloatRange(0, 1),
    help="Exit 1 when the mAP is below this (a quality gate).",
)
@click.option("--threads", type=click.IntRange(1, 64), help="Interpreter threads.")
@backend_option
def evaluate(model, labels_csv, as_json, min_map, threads, backend) -> None:
    """Multi-label metrics of MODEL on a labelled CSV, at the model's embedded thresholds.

    Exit 1 when an image could not be evaluated or the mAP is below --min-map."""
    import numpy as np

    from ..evaluation.dataset import read_labels_csv
    from ..evaluation.metrics import format_report, multilabel_report

    clf = load_classifier(model, threads, backend)
    try:
        table = read_labels_csv(labels_csv, labels=clf.labels, check_files=True)
    except EdgeError as exc:
        raise Fatal(str(exc)) from None
    for w in table.warnings:
        click.echo(f"Warning: {w}", err=True)
    failures = [(str(s.filename), s.reason) for s in table.skipped]
    rows, scores = [], []
    for i, path in enumerate(table.paths):
        pred, problem = _try_predict(clf, path)
        if pred is None:
            failures.append((str(path), problem))
        else:
            scores.append(list(pred.scores.values()))
            rows.append(i)
    if not rows:
        raise Fatal(f"{labels_csv}: no usable images")
    report = multilabel_report(table.y[rows], np.asarray(scores), clf.thresholds, clf.labels)
    report["skipped"] = len(failures)
    # NaN (no label has a positive here) never passes a quality gate.
    below = min_map is not None and not report["map"] >= min_map
    report["min_map"] = None if min_map is None else {"required": min_map, "passed": not below}
    if as_json:
        click.echo(atomic.dumps(report))
    else:
        click.echo(format_report(report, title=f"{model} on {labels_csv}"))
    for path, problem in failures:
        click.echo(f"Error: {path}: {problem}", err=True)
    if below:
        click.echo(
            f"Error: mAP {report['map']:.4f} is below the required --min-map {min_map}", err=True
        )
    if failures or below:
        sys.exit(1)
