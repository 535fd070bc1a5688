"""`edge-train`: train a multi-label model from a labels CSV; `edge-train make-demo` writes demo data."""
from __future__ import annotations

import sys

import click

from edge_runtime import atomic
from edge_runtime.clikit import DefaultGroup
from edge_runtime.errors import EdgeError, first_line

from .config import NO_AUGMENT, Arch, Augment, Distribute, Loss, TrainConfig

EXIT_USAGE = 2  # bad options or bad input data (click's own usage errors use 2 as well)
EXIT_FAILURE = 1  # anything else that went wrong during training
DEMO_MIN_SIZE = 16  # = trainer.demo_data.MIN_IMAGE_SIZE (not imported here: it loads PIL)

EPILOG = """\b
Examples:
  edge-train make-demo demo/                      # write a demo data set of shapes
  edge-train demo/train.csv --out runs/demo       # train the default (compact, 96 px)
  edge-train photos/labels.csv --out runs/r1 --arch mobilenetv3 --weights imagenet
  edge-train data.csv --val-data val.csv --out runs/r2 --epochs 50 --json > result.json
  edge-train big.csv --out runs/r3 --cache-dir /scratch/cache --distribute mirrored   # all local GPUs
  export TF_CONFIG='{"cluster":{"worker":["a:2222","b:2222"]},"task":{"type":"worker","index":0}}'
  edge-train big.csv --out runs/r4 --distribute multiworker   # the same on b, with "index":1

\b
The CSV is either `filename,labels` (labels joined by space, ';' or '|', empty = none)
or `filename,<label1>,<label2>,...` with 0/1 columns. Paths are relative to the CSV
(or absolute, e.g. on a mounted bucket or share). Decoded images stream from shards on disk
(--cache-dir keeps them for the next run), so memory does not grow with the data set.
Progress goes to stderr; stdout holds only the result (a table, or one JSON object).
"""


class DefaultToTrain(DefaultGroup):
    """A group whose unknown first argument (a CSV path) runs the `train` command."""

    default_command = "train"


@click.group(cls=DefaultToTrain, epilog=EPILOG, context_settings={"help_option_names": ["-h", "--help"]},
             invoke_without_command=False)
def cli() -> None:
    """Train a sigmoid-head multi-label image classifier: edge-train DATA.csv --out RUN_DIR."""


@cli.command("train", epilog=EPILOG, context_settings={"help_option_names": ["-h", "--help"]})
@click.argument("data", type=click.Path(dir_okay=False))
@click.option("--out", "-o", required=True, type=click.Path(file_okay=False), help="Run directory to create (must be new or empty).")
@click.option("--val-data", type=click.Path(dir_okay=False), help="Separate validation CSV (default: stratified split of DATA).")
@click.option("--arch", type=click.Choice([a.value for a in Arch]), default=Arch.COMPACT.value, show_default=True)
@click.option("--input-size", type=int, default=96, show_default=True, help="Square input side in pixels.")
@click.option("--epochs", type=int, default=30, show_default=True)
@click.option("--batch-size", type=int, default=32, show_default=True)
@click.option("--lr", "learning_rate", type=float, default=3e-3, show_default=True, help="Adam learning rate.")
@click.option("--patience", type=int, default=6, show_default=True, help="Early-stopping patience on val mAP.")
@click.option("--val-fraction", type=float, default=0.2, show_default=True)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--pos-weight", default="auto", show_default=True,
              callback=lambda _ctx, _param, value: _parse_pos_weight(value),
              help="'auto' (clip(neg/pos, 1, 10) per label), 'none', or comma-separated floats, one per label.")
@click.option("--loss", type=click.Choice([l.value for l in Loss]), default=Loss.BCE.value, show_default=True)
@click.option("--focal-gamma", type=float, default=2.0, show_default=True)
@click.option("--no-augment", is_flag=True, help="Turn all augmentation off.")
@click.option("--no-flip", is_flag=True, help="No horizontal flips (e.g. for text or left/right labels).")
@click.option("--vflip", is_flag=True, help="Also flip vertically.")
@click.option("--translate", type=float, default=0.1, show_default=True, help="Max shift, fraction of the side.")
@click.option("--brightness", type=float, default=0.15, show_default=True)
@click.option("--contrast", type=float, default=0.15, show_default=True)
@click.option("--weights", default=None, help="mobilenetv3 only: 'imagenet' or a .h5/.weights.h5 file.")
@click.option("--width", type=float, default=1.0, show_default=True, help="Channel multiplier (compact, mobilenetv3).")
@click.option("--workers", type=int, default=None, help="Image-decoding threads.")
@click.option("--cache-dir", type=click.Path(file_okay=False), default=None, help="Cache decoded images here.")
@click.option("--in-memory", is_flag=True, help="Decode the whole set into RAM instead of streaming shards.")
@click.option("--distribute", type=click.Choice([d.value for d in Distribute]), default=Distribute.NONE.value,
              show_default=True, help="mirrored: all local GPUs/CPU devices; multiworker: the cluster in "
              "TF_CONFIG. --batch-size is per replica; the LR is scaled by sqrt(replicas).")
@click.option("--json", "as_json", is_flag=True, help="Print the result as one JSON object on stdout.")
@click.option("--quiet", "-q", is_flag=True, help="No per-epoch progress on stderr.")
def train_cmd(data, out, val_data, arch, input_size, epochs, batch_size, learning_rate, patience, val_fraction,
              seed, pos_weight, loss, focal_gamma, no_augment, no_flip, vflip, translate, brightness, contrast,
              weights, width, workers, cache_dir, in_memory, distribute, as_json, quiet) -> None:
    """Train on DATA (a labels CSV) and write the run directory OUT."""
    try:  # an invalid option value is a usage error, not a training failure
        augment = NO_AUGMENT if no_augment else Augment(flip=not no_flip, vflip=vflip, translate=translate,
                                                        brightness=brightness, contrast=contrast)
        config = TrainConfig(
            data=data, out=out, val_data=val_data, arch=arch, input_size=input_size, epochs=epochs,
            batch_size=batch_size, learning_rate=learning_rate, patience=patience, val_fraction=val_fraction,
            seed=seed, pos_weight=pos_weight, loss=loss, focal_gamma=focal_gamma,
            augment=augment, weights=weights, workers=workers, cache_dir=cache_dir, width=width,
            verbose=not quiet, in_memory=in_memory, distribute=distribute,
        )
    except (EdgeError, ValueError) as exc:
        _fail(str(exc), EXIT_USAGE)
    try:
        from .train import train  # TensorFlow loads here, not for --help

        result = train(config)
    except EdgeError as exc:
        _fail(str(exc), EXIT_USAGE)
    except KeyboardInterrupt:
        _fail("interrupted; no run directory was written", 130)
    except Exception as exc:  # keep the promise of no tracebacks, but say what broke
        _fail(f"training failed: {type(exc).__name__}: {first_line(exc)}", EXIT_FAILURE)
    if as_json:
        click.echo(atomic.dumps(result.to_dict()))
    else:
        click.echo(result.summary())


@cli.command("make-demo", context_settings={"help_option_names": ["-h", "--help"]})
@click.argument("out_dir", type=click.Path(file_okay=False))
@click.option("--n-train", type=click.IntRange(min=1), default=1500, show_default=True)
@click.option("--n-test", type=click.IntRange(min=1), default=300, show_default=True)
@click.option("--size", type=click.IntRange(min=DEMO_MIN_SIZE), default=96, show_default=True,
              help="Image side in pixels.")
@click.option("--seed", type=click.IntRange(min=0), default=0, show_default=True)
def make_demo_cmd(out_dir, n_train, n_test, size, seed) -> None:
    """Write a seeded demo data set of shapes: OUT_DIR/train.csv and OUT_DIR/test.csv."""
    from .demo_data import DemoConfig, make_demo_dataset

    try:
        train_csv, test_csv = make_demo_dataset(DemoConfig(out_dir, n_train, n_test, size, seed))
    except OSError as exc:
        _fail(f"{out_dir}: {exc.strerror or exc}", EXIT_USAGE)
    except (EdgeError, ValueError) as exc:
        _fail(str(exc), EXIT_USAGE)
    click.echo(f"{train_csv}\n{test_csv}")


def _parse_pos_weight(text: str) -> str | tuple[float, ...]:
    """The --pos-weight value; click.BadParameter (a usage error, exit 2) if it is not one."""
    if text in ("auto", "none"):
        return text
    try:
        return tuple(float(v) for v in text.split(","))
    except ValueError:
        raise click.BadParameter(f"{text!r}: expected 'auto', 'none' or comma-separated numbers",
                                 param_hint="--pos-weight") from None


def _fail(message: str, code: int) -> None:
    click.echo(f"Error: {message}", err=True)
    sys.exit(code)


def main() -> None:
    """Console-script entry point."""
    cli(prog_name="edge-train")


if __name__ == "__main__":
    main()
