"""Click parameter types of the command line: ``HxW`` sizes, ``KEY=VALUE`` pairs, comma lists.

A bad value fails as click's usage error, which names the flag (``Invalid value for '--size':
expected HxW (e.g. 480x853), got 'abc'``, exit 2). A type built with ``one_line=True`` fails
instead as an :class:`~vssbench.errors.OptionError` that the ``vssbench`` group prints as one
``error: --size abc: ...`` line (exit 2): the style of ``data synth``, whose library call reports
every other bad input that way.

Globs over the registry (``--method 'tfc,seg*'``) are not expanded here: the comma list goes to
:func:`vssbench.harness.build_configs`, which the Python API shares.
"""

from __future__ import annotations

from typing import Any, NoReturn

import click

from vssbench.errors import OptionError


class _ParamType(click.ParamType):
    """What the types below share: the old metavar and the two ways of failing."""

    def __init__(self, one_line: bool = False) -> None:
        self.one_line = one_line

    def get_metavar(self, param: click.Parameter, ctx: click.Context | None = None) -> str:
        return "TEXT"  # the metavar of the plain string options these types replaced: --help reads as before

    def fail_value(
        self, message: str, value: str, param: click.Parameter | None, ctx: click.Context | None
    ) -> NoReturn:
        """Reject ``value``: a usage error naming the flag, or (``one_line``) ``FLAG VALUE: message``."""
        if self.one_line:
            flag = param.opts[0] if param is not None else "value"
            raise OptionError(f"{flag} {value}: {message}")
        self.fail(message, param, ctx)


class Size(_ParamType):
    """``HxW`` (``480x853``, case-insensitive ``X``) -> ``(H, W)``, both sides positive integers."""

    name = "size"

    def convert(
        self, value: Any, param: click.Parameter | None, ctx: click.Context | None
    ) -> tuple[int, int]:
        if isinstance(value, tuple):
            return value
        try:
            h, w = (int(v) for v in value.lower().split("x"))
        except ValueError:
            self.fail_value(f"expected HxW (e.g. 480x853), got {value!r}", value, param, ctx)
        if h <= 0 or w <= 0:
            self.fail_value(f"sides must be positive, got {value!r}", value, param, ctx)
        return h, w


class KeyValue(_ParamType):
    """``KEY=VALUE`` -> ``(KEY, VALUE)``, both stripped; the value stays a string (its user coerces it).

    Meant for a repeatable option (``--set``, ``--knob``): ``dict(pairs)`` lets a later key win.
    """

    name = "key=value"

    def convert(
        self, value: Any, param: click.Parameter | None, ctx: click.Context | None
    ) -> tuple[str, str]:
        if isinstance(value, tuple):
            return value
        key, sep, text = value.partition("=")
        if not sep or not key.strip():
            self.fail_value(f"expected KEY=VALUE, got {value!r}", value, param, ctx)
        return key.strip(), text.strip()


class CommaList(_ParamType):
    """``a, b,,c`` -> ``["a", "b", "c"]``: items stripped, empty items dropped (``""`` gives ``[]``)."""

    name = "list"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> list[str]:
        if isinstance(value, list):
            return value
        return [item.strip() for item in value.split(",") if item.strip()]


class IntList(_ParamType):
    """``1, 2,3`` -> ``[1, 2, 3]``: at least one integer; empty items dropped."""

    name = "integers"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> list[int]:
        if isinstance(value, list):
            return value
        try:
            numbers = [int(item) for item in value.split(",") if item.strip()]
        except ValueError:
            self.fail_value(f"expected a comma list of integers, got {value!r}", value, param, ctx)
        if not numbers:
            self.fail_value(f"expected at least one integer, got {value!r}", value, param, ctx)
        return numbers


__all__ = ["CommaList", "IntList", "KeyValue", "Size"]
