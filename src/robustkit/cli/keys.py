"""`robustkit keys`: API keys of `robustkit serve` (add prints a key once; the file keeps only salted hashes)."""
from __future__ import annotations

import json
from typing import Optional

import typer

from . import app
from ._common import USER_ERRORS, fail

keys_app = typer.Typer(no_args_is_help=True, help="Manage the API keys of `robustkit serve` (a JSON keys file that "
                                                   "holds names and salted scrypt hashes, never a key).")
app.add_typer(keys_app, name="keys")
FILE = typer.Option(..., "--file", help="The keys file (created by the first `keys add`).")


@keys_app.command("add")
def add(name: str = typer.Argument(..., help="Name of the key's holder (shown in logs and metrics)."),
        file: str = FILE,
        rate_limit: Optional[float] = typer.Option(None, help="This key's requests/s (default: the server's "
                                                              "--rate-limit)."),
        burst: Optional[int] = typer.Option(None, help="This key's burst (default: 2 x its rate).")) -> None:
    """Create a key and print it once (store it now: only its hash is kept)."""
    from ..serve.auth import add_key
    try:
        key = add_key(file, name, rate_limit=rate_limit, burst=burst)
    except USER_ERRORS as err:
        fail(err)
        return
    typer.echo(key)
    typer.secho(f"added key {name!r} to {file}; it is shown only this once.", err=True)


@keys_app.command("list")
def list_(file: str = FILE, json_out: bool = typer.Option(False, "--json", help="Print JSON.")) -> None:
    """List key names, ids and creation times."""
    from ..serve.auth import list_keys
    try:
        rows = list_keys(file)
    except USER_ERRORS as err:
        fail(err)
        return
    if json_out:
        typer.echo(json.dumps(rows, indent=1))
        return
    for r in rows:
        typer.echo(f"{r['name']:<24} {r['id']}  {r.get('created') or ''}")
    if not rows:
        typer.echo("(no keys)")


@keys_app.command("revoke")
def revoke(name: str = typer.Argument(..., help="Name of the key to revoke."), file: str = FILE) -> None:
    """Remove a key (running servers stop accepting it within a second)."""
    from ..serve.auth import revoke_key
    try:
        revoke_key(file, name)
    except USER_ERRORS as err:
        fail(err)
        return
    typer.echo(f"revoked {name!r}")
