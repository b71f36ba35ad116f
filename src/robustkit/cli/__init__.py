"""`robustkit` command line: one module per command, a thin layer over the Python API.

Every command routes by the modality of its data (the dataset registry's tag, or the checkpoint's
data spec) through :mod:`robustkit.modality`; none asks whether it holds images or texts.
"""
from __future__ import annotations

import typer

app = typer.Typer(add_completion=False, no_args_is_help=True,
                  help="Attack, adversarially train and audit PyTorch classifiers (images and texts).")

# Importing the command modules registers their commands on `app`, in this order in --help.
from . import list as _list, train as _train, attack as _attack, audit as _audit, check as _check  # noqa: E402,F401
from . import certify as _certify, compare as _compare, demo as _demo, text_alias as _text_alias  # noqa: E402,F401


def main() -> None:
    app()


__all__ = ["app", "main"]
