"""``vssbench methods``: the registered methods (a thin shell over :func:`vssbench.methods.describe`)."""

from __future__ import annotations

import json

import click

from vssbench.methods import available, describe


@click.command("methods")
@click.option("--json", "as_json", is_flag=True, help="Print the descriptions as JSON.")
def methods_cmd(as_json: bool) -> None:
    """List the registered methods with their origin, paper, type and options (the keys of --set).

    The origin is "builtin", the distribution and version of an installed plugin, or "module M"
    for a --plugin module. A plugin that failed to load is a warning on stderr; the others list.

    \b
    Example:
      vssbench methods
      vssbench --plugin my_method methods --json
    """
    described = [describe(name) for name in available()]
    if as_json:
        click.echo(json.dumps(described, indent=2))
        return
    for d in described:
        origin = (
            d["origin"] if d["origin"] == "builtin" or not d["version"] else f"{d['origin']} {d['version']}"
        )
        click.echo(f"{d['name']}  [{d['type']}]  {d['paper']}  ({origin})")
        if d["description"]:
            click.echo(f"    {d['description']}")
        click.echo("    options: " + ", ".join(f"{k}={v!r}" for k, v in d["options"].items()))
