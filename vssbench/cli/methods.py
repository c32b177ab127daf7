"""``vssbench methods``: the registered methods (a thin shell over :func:`vssbench.methods.describe`)."""

from __future__ import annotations

import json

import click

from vssbench.methods import available, describe


@click.command("methods")
@click.option("--json", "as_json", is_flag=True, help="Print the descriptions as JSON.")
def methods_cmd(as_json: bool) -> None:
    """List the registered methods with their paper, type and options (the keys of --set).

    \b
    Example:
      vssbench methods
    """
    described = [describe(name) for name in available()]
    if as_json:
        click.echo(json.dumps(described, indent=2))
        return
    for d in described:
        click.echo(f"{d['name']}  [{d['type']}]  {d['paper']}")
        if d["description"]:
            click.echo(f"    {d['description']}")
        click.echo("    options: " + ", ".join(f"{k}={v!r}" for k, v in d["options"].items()))
