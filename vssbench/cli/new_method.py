"""``vssbench new-method``: write a new method's plugin package (a thin shell over
:func:`vssbench.scaffold.write_method_package`)."""

from __future__ import annotations

from pathlib import Path

import click

from vssbench.methods import available
from vssbench.scaffold import write_method_package


@click.command("new-method")
@click.argument("name")
@click.option(
    "--out",
    type=click.Path(path_type=Path),
    default=None,
    help="Folder to write: new or empty (default: ./NAME).",
)
def new_method_cmd(name: str, out: Path | None) -> None:
    """Write the plugin package of a new method NAME: adapter, entry point, tests, README.

    NAME is a lower-case Python identifier (also the package's name). As written, the method is a
    per-frame SegFormer that installs, runs, trains and passes vssbench's contract checks; edit
    its src/NAME/adapter.py (docs/adding-a-method.md explains the contract).

    \b
    Example:
      vssbench new-method my_method --out my_method
      pip install -e ./my_method && pytest my_method
      vssbench run --method my_method --max-videos 1 --max-frames 4
    """
    folder = write_method_package(name, out if out is not None else Path(name), taken=available())
    # pip reads a bare relative name ("my_method") as a package to fetch, not as a folder.
    shown = str(folder) if folder.is_absolute() or str(folder).startswith(".") else f"./{folder}"
    click.echo(f"wrote {shown}")
    click.echo("next:")
    click.echo(f"  pip install -e {shown}        # registers {name!r} through the package's entry point")
    click.echo(f"  pytest {shown}                # vssbench's contract checks on {name}")
    click.echo(f"  vssbench run --method {name} --max-videos 1 --max-frames 4")
    click.echo(f"  then make {shown}/src/{name}/adapter.py your method")
