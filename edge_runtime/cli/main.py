"""`edge-infer`: classify images with a TFLite model on the device.

The only place that turns library exceptions into messages and exit codes:
0 every input classified, 1 some inputs failed (listed on stderr after the rest were
classified), 2 usage or model error. Never a traceback for an EdgeError.
"""

from __future__ import annotations

import sys

import click

from ..errors import EdgeError
from .evaluate import evaluate
from .kit import DefaultGroup
from .model import bench, info, verify
from .predict import predict
from .serve import serve


@click.group(
    cls=DefaultGroup,
    epilog="""\b
Examples:
  edge-infer model.tflite photo.jpg            classify one image (same as `predict`)
  edge-infer model.tflite photos/ --json       every image under photos/, JSON lines
  edge-infer model.tflite --camera --events    label changes seen by the camera
  edge-infer info model.tflite                 labels, thresholds, tensors, ops
  edge-infer verify model.tflite               changed since export? (exit 1 if so)
  edge-infer eval model.tflite test.csv        metrics on a labelled set
  edge-infer bench model.tflite --runs 100     latency and memory
  edge-infer serve model.tflite                HTTP: POST an image to /classify
""",
)
@click.version_option(package_name="edge-multilabel")
def main_group() -> None:
    """Run a multi-label TFLite image classifier (no TensorFlow needed)."""


for _command in (predict, evaluate, info, verify, bench, serve):
    main_group.add_command(_command)


def main(argv: list[str] | None = None) -> None:
    """Console entry point."""
    try:
        main_group.main(args=argv, prog_name="edge-infer", standalone_mode=True)
    except EdgeError as exc:  # anything a command did not map itself
        click.echo(f"Error: {exc}", err=True)
        sys.exit(2)


if __name__ == "__main__":
    main()
