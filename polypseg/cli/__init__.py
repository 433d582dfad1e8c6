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
    from polypseg.cli.helptext import hide_flag_types

    hide_flag_types()
    from polypseg.cli import bench, data, deploy, inspect, models, report, train

    for module in (data, models, train, inspect, deploy, bench, report):
        module.register(app)


_register_all()


def _click_errors() -> tuple[tuple[type[Exception], ...], tuple[type[Exception], ...]]:
    """``(ClickException classes, Abort classes)`` of the click that typer runs on.

    typer >= 0.28 raises its own vendored copy of click's exceptions (``typer._click``), which
    are not subclasses of the ``click`` package's; older typer raises click's own.
    """
    import importlib

    errors: list[type[Exception]] = []
    aborts: list[type[Exception]] = [typer.Abort]
    for name in ("typer._click.exceptions", "click.exceptions"):
        try:
            module = importlib.import_module(name)
        except ImportError:
            continue
        errors.append(module.ClickException)
        if hasattr(module, "Abort"):
            aborts.append(module.Abort)
    return tuple(errors), tuple(aborts)


def usage_error_line(err: Exception) -> str:
    """A click usage error as one line: the message, then where the help is."""
    message = " ".join(err.format_message().split())  # type: ignore[attr-defined]
    ctx = getattr(err, "ctx", None)
    hint = f" (see '{ctx.command_path} --help')" if ctx is not None else ""
    return f"error: {message}{hint}"


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``polypseg`` console script.

    Exit status: 0 on success, 2 for bad input (a :class:`PolypsegError` or a usage error such
    as an unknown option or an invalid value: one line on stderr, no traceback), 130 when
    interrupted, 1 when aborted.
    """
    try:
        result = app(args=argv, prog_name="polypseg", standalone_mode=False)
    except PolypsegError as err:
        typer.secho(f"error: {err}", fg=typer.colors.RED, err=True)
        return 2
    except KeyboardInterrupt:
        typer.secho("interrupted", fg=typer.colors.YELLOW, err=True)
        return 130
    except OSError as err:  # the file system refused (read-only, full, a file in the way...)
        from polypseg.atomic import WRITE_ERRNOS

        if err.errno not in WRITE_ERRNOS or not err.filename:
            raise
        reason = (err.strerror or str(err)).lower()
        typer.secho(f"error: {err.filename}: {reason}", fg=typer.colors.RED, err=True)
        return 2
    except SystemExit as exit_:
        return int(exit_.code or 0)
    except Exception as err:  # typer's (vendored) click exceptions
        errors, aborts = _click_errors()
        if isinstance(err, typer.Exit):
            return int(err.exit_code)
        if isinstance(err, aborts):
            typer.secho("aborted", fg=typer.colors.YELLOW, err=True)
            return 1
        if not isinstance(err, errors):
            raise
        if err.__class__.__name__ == "NoArgsIsHelpError":  # bare `polypseg`: the help
            err.show()  # type: ignore[attr-defined]
            return 2
        typer.secho(usage_error_line(err), fg=typer.colors.RED, err=True)
        return 2
    return result if isinstance(result, int) else 0


if __name__ == "__main__":
    sys.exit(main())
