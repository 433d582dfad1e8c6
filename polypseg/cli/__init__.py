"""The ``polypseg`` command line: one typer app, each command a thin function over library code.

Each module in this package owns one group of commands and exposes ``register(app)``; heavy
imports (torch, monai, e2cnn) happen inside the command functions so ``polypseg --help`` is fast.
:func:`main` turns a :class:`~polypseg.errors.PolypsegError` into a one-line message on stderr
and exit status 2, never a traceback.
"""

from __future__ import annotations

import sys

import typer

from polypseg.errors import PolypsegError

app = typer.Typer(
    name="polypseg",
    help="Rotation-equivariant polyp segmentation: data, models, training, sweeps, deployment.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def _register_all() -> None:
    from polypseg.cli import bench, data, deploy, inspect, models, report, train

    for module in (data, models, train, inspect, deploy, bench, report):
        module.register(app)


_register_all()


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``polypseg`` console script."""
    try:
        result = app(args=argv, standalone_mode=False)
    except PolypsegError as err:
        typer.secho(f"error: {err}", fg=typer.colors.RED, err=True)
        return 2
    except KeyboardInterrupt:
        typer.secho("interrupted", fg=typer.colors.YELLOW, err=True)
        return 130
    except SystemExit as exit_:  # typer.Exit inside standalone_mode=False
        return int(exit_.code or 0)
    except Exception as err:  # click usage errors
        import click

        if isinstance(err, click.exceptions.ClickException):
            err.show()
            return err.exit_code
        if isinstance(err, click.exceptions.Abort):
            return 1
        raise
    return result if isinstance(result, int) else 0


if __name__ == "__main__":
    sys.exit(main())
