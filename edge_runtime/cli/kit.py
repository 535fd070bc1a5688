"""Small click pieces every CLI of the toolkit shares (no TensorFlow, no model code)."""

from __future__ import annotations

import dataclasses
import warnings

import click

from ..errors import EdgeError
from ..inference.backend import BACKENDS


class Fatal(click.ClickException):
    """A usage or model error: `Error: <message>` and exit code 2."""

    exit_code = 2


class DefaultGroup(click.Group):
    """A group that runs `default_command` when the first argument is not a subcommand name."""

    default_command = "predict"

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        if args and args[0] not in self.commands and args[0] not in ("--help", "-h", "--version"):
            args = [self.default_command, *args]
        return super().parse_args(ctx, args)


def config_default(config_cls: type, name: str):
    """The default of dataclass field `name`: CLIs take their defaults from the stage's config."""
    field = config_cls.__dataclass_fields__[name]
    return (
        field.default if field.default_factory is dataclasses.MISSING else field.default_factory()
    )


def option_group(*options):
    """A decorator adding `options` to a click command, in the order given (for --help)."""

    def decorate(command):
        for option in reversed(options):
            command = option(command)
        return command

    return decorate


def check_needs(names: tuple[str, ...], needed: str) -> None:
    """Refuse (usage error) any of the options `names` given on the command line without the
    option they only make sense with, `needed` (e.g. "--mqtt URL")."""
    ctx = click.get_current_context()
    for name in names:
        if ctx.get_parameter_source(name) is click.core.ParameterSource.COMMANDLINE:
            raise click.UsageError(f"--{name.replace('_', '-')} needs {needed}")


# The interpreter-package option of every command that loads a model; choices from the backend module.
backend_option = click.option(
    "--backend", type=click.Choice(list(BACKENDS)), help="Interpreter package."
)


def load_classifier(model: str, threads: int | None = None, backend: str | None = None):
    """The model at `model`, its load warnings echoed one line each; a ModelError becomes Fatal."""
    from ..inference.classifier import Classifier

    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            clf = Classifier.from_file(model, threads=threads, backend=backend)
    except EdgeError as exc:
        raise Fatal(str(exc)) from None
    for w in caught:  # one line each, without the library's source location
        click.echo(f"Warning: {w.message}", err=True)
    return clf
