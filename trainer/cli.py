"""`edge-train`: train a multi-label model from a labels CSV; `edge-train make-demo` writes demo data."""

from __future__ import annotations

import sys
from dataclasses import replace

import click

from edge_runtime import atomic
from edge_runtime.cli.kit import DefaultGroup, config_default
from edge_runtime.errors import EdgeError, first_line

from .config import (
    ARCH_DEFAULTS,
    DEFAULT_ARCH,
    NO_AUGMENT,
    RECIPES,
    Arch,
    Distribute,
    FineTune,
    HeadFeatures,
    Loss,
    Recipe,
    Thresholds,
    TrainConfig,
)
from .fit.plan import resolve

EXIT_USAGE = 2  # bad options or bad input data (click's own usage errors use 2 as well)
EXIT_FAILURE = 1  # anything else that went wrong during training
DEMO_MIN_SIZE = 16  # = trainer.demo.demo_data.MIN_IMAGE_SIZE (not imported here: it loads PIL)
# An error, not a warning that ignores it: the option no longer means anything, and a script
# that passes it learns so once (see benchmarks/results/pipeline.md for why it went).
IN_MEMORY_GONE = (
    "--in-memory was removed: training always streams decoded images from shards, as fast as "
    "the in-memory copy at small sizes; drop the option (--cache-dir keeps the shards)"
)

EPILOG = """\b
Examples:
  edge-train make-demo demo/                      # write a demo data set of shapes
  edge-train photos/labels.csv --out runs/r1      # the default: ImageNet EfficientNet-Lite0
  edge-train demo/train.csv --out runs/demo --arch compact    # small and fast, from scratch
  edge-train demo/train.csv --out runs/seed --recipe seed     # exactly the seed script
  edge-train photos/labels.csv --out runs/r1 --fine-tune none # head only (fastest, few images)
  edge-train photos/labels.csv --out runs/r1 --arch mobilenetv2 --weights imagenet  # downloads
  edge-train new_photos.csv --out runs/r2 --init-from runs/r1  # fine-tune a previous run
  edge-train data.csv --val-data val.csv --out runs/r3 --epochs 50 --json > result.json
  edge-train big.csv --out runs/r4 --cache-dir /scratch/cache --distribute mirrored   # all local GPUs
  export TF_CONFIG='{"cluster":{"worker":["a:2222","b:2222"]},"task":{"type":"worker","index":0}}'
  edge-train big.csv --out runs/r5 --distribute multiworker   # the same on b, with "index":1

\b
The CSV is either `filename,labels` (labels joined by space, ';' or '|', empty = none)
or `filename,<label1>,<label2>,...` with 0/1 columns. Paths are relative to the CSV
(or absolute, e.g. on a mounted bucket or share). Decoded images stream from shards on disk
(--cache-dir keeps them for the next run), so memory does not grow with the data set.
Options left out take the recipe's value (--recipe default: the toolkit defaults shown).
Progress goes to stderr; stdout holds only the result (a table, or one JSON object).
"""


class DefaultToTrain(DefaultGroup):
    """A group whose unknown first argument (a CSV path) runs the `train` command."""

    default_command = "train"


@click.group(
    cls=DefaultToTrain,
    epilog=EPILOG,
    context_settings={"help_option_names": ["-h", "--help"]},
    invoke_without_command=False,
)
def cli() -> None:
    """Train a sigmoid-head multi-label image classifier: edge-train DATA.csv --out RUN_DIR."""


def _choice(enum) -> click.Choice:
    return click.Choice([e.value for e in enum])


def _default(name: str) -> str:
    """Help text of a TrainConfig default (the value lives in TrainConfig only)."""
    value = config_default(TrainConfig, name)
    return getattr(value, "value", value)


_ARCH_DEFAULTS = ", ".join(f"{a.value} {d.input_size}" for a, d in ARCH_DEFAULTS.items())
_LR_DEFAULTS = ", ".join(f"{a.value} {d.learning_rate:g}" for a, d in ARCH_DEFAULTS.items())
_AUG = config_default(TrainConfig, "augment")


@cli.command("train", epilog=EPILOG, context_settings={"help_option_names": ["-h", "--help"]})
@click.argument("data", type=click.Path(dir_okay=False))
@click.option(
    "--out",
    "-o",
    required=True,
    type=click.Path(file_okay=False),
    help="Run directory to create (must be new or empty).",
)
@click.option(
    "--recipe",
    type=_choice(Recipe),
    default=Recipe.DEFAULT.value,
    show_default=True,
    help="Starting values: 'seed' is exactly the seed script (seed net, 64 px, Adam 1e-3, 5 epochs, "
    "batch 32, plain BCE, no augmentation, thresholds 0.5). Options given win over it.",
)
@click.option(
    "--val-data",
    type=click.Path(dir_okay=False),
    help="Separate validation CSV (default: stratified split of DATA).",
)
@click.option(
    "--arch",
    type=_choice(Arch),
    default=None,
    show_default=f"{DEFAULT_ARCH.value}, or the --init-from run's",
    help="efficientnet_lite0: ImageNet-pretrained, best on photos; compact: smallest and "
    "fastest, from scratch; seed: the seed script's network; mobilenetv2/v3: Keras backbones.",
)
@click.option(
    "--input-size",
    type=int,
    default=None,
    show_default=f"per arch: {_ARCH_DEFAULTS}",
    help="Square input side in pixels.",
)
@click.option(
    "--epochs",
    type=int,
    default=None,
    show_default=_default("epochs"),
    help="Epoch budget (from pretrained weights: stage 1 + stage 2).",
)
@click.option("--batch-size", type=int, default=None, show_default=_default("batch_size"))
@click.option(
    "--lr",
    "learning_rate",
    type=float,
    default=None,
    show_default=f"per arch: {_LR_DEFAULTS}",
    help="Adam learning rate (stage 2 and --init-from run at a fraction of it).",
)
@click.option(
    "--patience",
    type=int,
    default=None,
    show_default=_default("patience"),
    help="Early-stopping patience on val mAP.",
)
@click.option(
    "--early-stop/--no-early-stop",
    default=None,
    show_default=str(_default("early_stop")).lower(),
    help="Stop on val mAP and keep the best epoch; off: fixed epochs at a constant rate, last weights.",
)
@click.option("--val-fraction", type=float, default=None, show_default=_default("val_fraction"))
@click.option("--seed", type=int, default=None, show_default=_default("seed"))
@click.option(
    "--pos-weight",
    default=None,
    show_default=_default("pos_weight"),
    callback=lambda _ctx, _param, value: None if value is None else _parse_pos_weight(value),
    help="'auto' (clip(neg/pos, 1, 10) per label), 'none', or comma-separated floats, one per label.",
)
@click.option("--loss", type=_choice(Loss), default=None, show_default=_default("loss"))
@click.option("--focal-gamma", type=float, default=None, show_default=_default("focal_gamma"))
@click.option(
    "--thresholds",
    type=_choice(Thresholds),
    default=None,
    show_default=_default("thresholds"),
    help="Thresholds the run keeps: per-label calibrated (max F1 on validation) or a fixed 0.5.",
)
@click.option("--no-augment", is_flag=True, default=None, help="Turn all augmentation off.")
@click.option(
    "--no-flip",
    is_flag=True,
    default=None,
    help="No horizontal flips (e.g. for text or left/right labels).",
)
@click.option("--vflip", is_flag=True, default=None, help="Also flip vertically.")
@click.option(
    "--translate",
    type=float,
    default=None,
    show_default=_AUG.translate,
    help="Max shift, fraction of the side.",
)
@click.option("--brightness", type=float, default=None, show_default=_AUG.brightness)
@click.option("--contrast", type=float, default=None, show_default=_AUG.contrast)
@click.option(
    "--weights",
    default=None,
    show_default="per arch: efficientnet_lite0 imagenet, the others none",
    help="'imagenet' (efficientnet_lite0: from the installed package, offline; mobilenetv2/v3: "
    "Keras downloads it), a backbone .weights.h5 file, or 'none' (random start). From "
    "pretrained weights the head trains first, then fine-tunes (--fine-tune).",
)
@click.option(
    "--fine-tune",
    type=_choice(FineTune),
    default=None,
    show_default=_default("fine_tune"),
    help="From pretrained weights, stage 2: none (head only), top (top third of the backbone), all.",
)
@click.option(
    "--head-epochs",
    type=int,
    default=None,
    show_default="a third of --epochs",
    help="From pretrained weights: epochs of stage 1 (head only).",
)
@click.option(
    "--head-features",
    type=_choice(HeadFeatures),
    default=None,
    show_default=_default("head_features"),
    help="Stage 1 trains on augmented images through the frozen backbone every epoch "
    "(augmented: better on new-looking images) or on each image's features computed once "
    "(cached: fast, no augmentation in stage 1).",
)
@click.option(
    "--init-from",
    type=click.Path(file_okay=False),
    default=None,
    help="Start from this previous run's weights (labels remapped by name; new ones start fresh).",
)
@click.option(
    "--width",
    type=float,
    default=None,
    show_default="1.0, or the --init-from run's",
    help="Channel multiplier (compact) / alpha (mobilenets).",
)
@click.option("--workers", type=int, default=None, help="Image-decoding threads.")
@click.option(
    "--cache-dir", type=click.Path(file_okay=False), default=None, help="Cache decoded images here."
)
# Removed: kept only to answer with a one-line error (IN_MEMORY_GONE), not in --help.
@click.option("--in-memory", is_flag=True, hidden=True)
@click.option(
    "--distribute",
    type=_choice(Distribute),
    default=None,
    show_default=_default("distribute"),
    help="mirrored: all local GPUs/CPU devices; multiworker: the cluster in "
    "TF_CONFIG. --batch-size is per replica; the LR is scaled by sqrt(replicas).",
)
@click.option(
    "--json", "as_json", is_flag=True, help="Print the result as one JSON object on stdout."
)
@click.option("--quiet", "-q", is_flag=True, help="No per-epoch progress on stderr.")
def train_cmd(
    recipe,
    no_augment,
    no_flip,
    vflip,
    translate,
    brightness,
    contrast,
    in_memory,
    as_json,
    quiet,
    **options,
) -> None:
    """Train on DATA (a labels CSV) and write the run directory OUT."""
    if in_memory:
        _fail(IN_MEMORY_GONE, EXIT_USAGE)
    try:  # an invalid option value is a usage error, not a training failure
        given = {k: v for k, v in options.items() if v is not None}
        base = RECIPES[Recipe(recipe)].get("augment", config_default(TrainConfig, "augment"))
        aug = {
            "flip": False if no_flip else None,
            "vflip": True if vflip else None,
            "translate": translate,
            "brightness": brightness,
            "contrast": contrast,
        }
        if no_augment:
            given["augment"] = NO_AUGMENT
        elif any(v is not None for v in aug.values()):
            given["augment"] = replace(base, **{k: v for k, v in aug.items() if v is not None})
        config = TrainConfig.from_recipe(recipe, **given, verbose=not quiet)
        # Files and environment (--init-from, --weights, TF_CONFIG) are read and checked here,
        # in well under a second and before TensorFlow loads or any image is decoded.
        plan = resolve(config)
    except (EdgeError, ValueError) as exc:
        _fail(str(exc), EXIT_USAGE)
    try:
        from .fit.train import train  # TensorFlow loads here, not for --help

        result = train(plan)
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
@click.option(
    "--size",
    type=click.IntRange(min=DEMO_MIN_SIZE),
    default=96,
    show_default=True,
    help="Image side in pixels.",
)
@click.option("--seed", type=click.IntRange(min=0), default=0, show_default=True)
@click.option(
    "--variant",
    type=click.Choice(["shapes", "clutter"]),
    default="shapes",
    show_default=True,
    help="shapes: large shapes, easy; clutter: small objects in clutter on textured photos, "
    "a long label tail (hard from scratch; see README).",
)
def make_demo_cmd(out_dir, n_train, n_test, size, seed, variant) -> None:
    """Write a seeded demo data set: OUT_DIR/train.csv and OUT_DIR/test.csv."""
    from .demo.clutter_demo import ClutterConfig, make_clutter_dataset
    from .demo.demo_data import DemoConfig, make_demo_dataset

    try:
        if variant == "clutter":
            train_csv, test_csv = make_clutter_dataset(
                ClutterConfig(out_dir, n_train, n_test, size, seed)
            )
        else:
            train_csv, test_csv = make_demo_dataset(
                DemoConfig(out_dir, n_train, n_test, size, seed)
            )
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
        raise click.BadParameter(
            f"{text!r}: expected 'auto', 'none' or comma-separated numbers",
            param_hint="--pos-weight",
        ) from None


def _fail(message: str, code: int) -> None:
    click.echo(f"Error: {message}", err=True)
    sys.exit(code)


def main() -> None:
    """Console-script entry point."""
    cli(prog_name="edge-train")


if __name__ == "__main__":
    main()
