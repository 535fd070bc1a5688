"""Small click pieces every CLI of the toolkit shares (no TensorFlow, no model code)."""
from __future__ import annotations

import dataclasses

import click


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
    return field.default if field.default_factory is dataclasses.MISSING else field.default_factory()
