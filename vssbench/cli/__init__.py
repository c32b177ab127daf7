"""The ``vssbench`` command line: a thin click shell, each command one library call.

The group lives here; each command group in its own module (``methods``, ``data``, ``run`` and
``profile``, ``train``, ``table``/``compare``/``plot``, ``reproduce``, ``convert``, ``new_method``) and the
parameter types in :mod:`vssbench.cli.params`. The CLI is a leaf: it imports the library, nothing imports it.
"""

from __future__ import annotations

import sys
import traceback

import click

from vssbench.cli import convert, data, methods, new_method, reports, reproduce, run, train
from vssbench.errors import VssbenchError
from vssbench.methods import load_plugins, plugin_exceptions


class _Group(click.Group):
    """Turns a :class:`VssbenchError` into one clear line (full traceback only with --debug)."""

    def invoke(self, ctx: click.Context):  # type: ignore[override]
        try:
            return super().invoke(ctx)
        except VssbenchError as exc:
            if ctx.obj and ctx.obj.get("debug"):
                traceback.print_exc()
            click.echo(f"error: {exc}", err=True)
            sys.exit(2)


@click.group(cls=_Group)
@click.option("--debug", is_flag=True, help="Show full tracebacks for errors.")
@click.option(
    "--plugin",
    "plugins",
    multiple=True,
    metavar="MODULE",
    help="Import MODULE (on the Python path, not installed) so that the methods it registers can be "
    "used (repeatable; also VSSBENCH_PLUGINS=mod1,mod2). Installed plugins load by themselves.",
)
@click.version_option(package_name="vssbench")
@click.pass_context
def main(ctx: click.Context, debug: bool, plugins: tuple[str, ...]) -> None:
    """vssbench: efficient and stable video semantic segmentation benchmark (VSPW, TFC).

    \b
    Example:
      vssbench run --method tfc --backbone b0
      vssbench --plugin my_method methods
    """
    ctx.ensure_object(dict)
    ctx.obj["debug"] = debug
    load_plugins(plugins)
    if debug:
        for exc in plugin_exceptions().values():
            traceback.print_exception(exc)


main.add_command(methods.methods_cmd)
main.add_command(data.data_group)
main.add_command(run.run_cmd)
main.add_command(run.profile_cmd)
main.add_command(train.train_cmd)
main.add_command(reports.table_group)
main.add_command(reports.compare_cmd)
main.add_command(reports.plot_group)
main.add_command(reproduce.reproduce_cmd)
main.add_command(convert.convert_cmd)
main.add_command(new_method.new_method_cmd)

__all__ = ["main"]
