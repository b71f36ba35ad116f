"""`robustkit` command line: one module per command, a thin layer over the Python API.

Every command routes by the modality of its data (the dataset registry's tag, or the checkpoint's
data spec) through :mod:`robustkit.modality`; none asks whether it holds images or texts.
"""
from __future__ import annotations

import typer

app = typer.Typer(add_completion=False, no_args_is_help=True,
                  help="Attack, adversarially train and audit PyTorch classifiers (images and texts).")


def _version(value: bool) -> None:
    if value:
        from importlib.metadata import PackageNotFoundError, version
        try:
            v = version("robustkit")
        except PackageNotFoundError:  # running from a source tree that was never installed
            v = "unknown (not installed)"
        import torch
        typer.echo(f"robustkit {v} (torch {torch.__version__})")
        raise typer.Exit()


@app.callback()
def _root(version: bool = typer.Option(False, "--version", callback=_version, is_eager=True,
                                       help="Print the version and exit.")) -> None:
    """Attack, adversarially train and audit PyTorch classifiers (images and texts)."""

# Importing the command modules registers their commands on `app`, in this order in --help.
from . import list as _list, train as _train, attack as _attack, audit as _audit, check as _check  # noqa: E402,F401
from . import certify as _certify, compare as _compare, demo as _demo, text_alias as _text_alias  # noqa: E402,F401
from . import serve as _serve, keys as _keys  # noqa: E402,F401
from . import harden as _harden, export as _export  # noqa: E402,F401


def main() -> None:
    app()


__all__ = ["app", "main"]
