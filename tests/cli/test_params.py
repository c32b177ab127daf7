"""The CLI's parameter types, case by case: what each accepts, and the exact message of a bad value."""

from __future__ import annotations

from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from vssbench.cli import main
from vssbench.cli.params import CommaList, IntList, KeyValue, Size
from vssbench.errors import OptionError


def _convert(kind: click.ParamType, text: str, flag: str = "--x"):
    return kind.convert(text, click.Option([flag]), None)


def _usage_error(kind: click.ParamType, text: str, flag: str = "--x") -> str:
    with pytest.raises(click.BadParameter) as info:
        _convert(kind, text, flag)
    return info.value.format_message()


# --- Size: HxW -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text, size",
    [("480x853", (480, 853)), ("32X48", (32, 48)), (" 32 x 48 ", (32, 48)), ("1x1", (1, 1))],
)
def test_size_accepts_hxw(text: str, size: tuple[int, int]) -> None:
    assert _convert(Size(), text) == size


@pytest.mark.parametrize(
    "text, message",
    [
        ("abc", "expected HxW (e.g. 480x853), got 'abc'"),
        ("480", "expected HxW (e.g. 480x853), got '480'"),
        ("1x2x3", "expected HxW (e.g. 480x853), got '1x2x3'"),
        ("4.5x8", "expected HxW (e.g. 480x853), got '4.5x8'"),
        ("0x5", "sides must be positive, got '0x5'"),
        ("32x-48", "sides must be positive, got '32x-48'"),
    ],
)
def test_size_rejects_with_the_flag_and_the_value(text: str, message: str) -> None:
    assert _usage_error(Size(), text, "--size") == f"Invalid value for '--size': {message}"
    with pytest.raises(OptionError) as info:
        _convert(Size(one_line=True), text, "--size")
    assert str(info.value) == f"--size {text}: {message}"


# --- KeyValue: --set, --knob -----------------------------------------------------------------------


@pytest.mark.parametrize(
    "text, pair",
    [
        ("threshold=0.5", ("threshold", "0.5")),
        (" tfc.threshold = 0.5 ", ("tfc.threshold", "0.5")),
        ("interp=", ("interp", "")),
        ("name=a=b", ("name", "a=b")),
    ],
)
def test_key_value_splits_at_the_first_equals_sign(text: str, pair: tuple[str, str]) -> None:
    assert _convert(KeyValue(), text) == pair


@pytest.mark.parametrize("text", ["interval", "=3", " =3", ""])
def test_key_value_needs_a_key_and_an_equals_sign(text: str) -> None:
    assert (
        _usage_error(KeyValue(), text, "--set")
        == f"Invalid value for '--set': expected KEY=VALUE, got {text!r}"
    )
    with pytest.raises(OptionError) as info:
        _convert(KeyValue(one_line=True), text, "--knob")
    assert str(info.value) == f"--knob {text}: expected KEY=VALUE, got {text!r}"


# --- CommaList and IntList -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text, items",
    [
        ("tfc", ["tfc"]),
        ("tfc, segformer", ["tfc", "segformer"]),
        ("b0,,b1,", ["b0", "b1"]),
        ("seg*,tfc", ["seg*", "tfc"]),  # globs are the library's to expand
        ("", []),
        (" , ", []),
    ],
)
def test_comma_list_strips_and_drops_empty_items(text: str, items: list[str]) -> None:
    assert _convert(CommaList(), text) == items


@pytest.mark.parametrize(
    "text, numbers", [("1,2,3", [1, 2, 3]), (" 2 , 5,7 ", [2, 5, 7]), ("1,,4,", [1, 4]), ("-1", [-1])]
)
def test_int_list_reads_integers(text: str, numbers: list[int]) -> None:
    assert _convert(IntList(), text) == numbers


@pytest.mark.parametrize(
    "text, message",
    [
        ("a,b", "expected a comma list of integers, got 'a,b'"),
        ("1,2.5", "expected a comma list of integers, got '1,2.5'"),
        (",", "expected at least one integer, got ','"),
        ("", "expected at least one integer, got ''"),
    ],
)
def test_int_list_rejects_with_the_flag_and_the_value(text: str, message: str) -> None:
    assert _usage_error(IntList(), text, "--frames") == f"Invalid value for '--frames': {message}"
    with pytest.raises(OptionError) as info:
        _convert(IntList(one_line=True), text, "--frames")
    assert str(info.value) == f"--frames {text}: {message}"


def test_converted_values_pass_through() -> None:
    """click may hand a type a value it already converted (a default given as the target type)."""
    assert _convert(Size(), (3, 4)) == (3, 4)
    assert _convert(KeyValue(), ("a", "1")) == ("a", "1")
    assert _convert(CommaList(), ["a"]) == ["a"]
    assert _convert(IntList(), [2]) == [2]


def test_help_keeps_the_metavar_text() -> None:
    @click.command()
    @click.option("--size", type=Size())
    @click.option("--set", "sets", type=KeyValue(), multiple=True, metavar="KEY=VALUE")
    def command(size: tuple[int, int] | None, sets: tuple[tuple[str, str], ...]) -> None:
        """A command."""

    text = CliRunner().invoke(command, ["--help"]).output
    assert "--size TEXT" in text and "--set KEY=VALUE" in text


# --- Through the real commands: the same text, exit status 2 -----------------------------------------


def test_a_bad_size_is_a_usage_error_naming_the_flag() -> None:
    result = CliRunner().invoke(main, ["run", "--method", "segformer", "--size", "abc"])
    assert result.exit_code == 2
    assert (
        result.stderr.splitlines()[-1]
        == "Error: Invalid value for '--size': expected HxW (e.g. 480x853), got 'abc'"
    )
    result = CliRunner().invoke(main, ["train", "--method", "tfc", "--crop", "0x32"])
    assert result.exit_code == 2
    assert (
        result.stderr.splitlines()[-1]
        == "Error: Invalid value for '--crop': sides must be positive, got '0x32'"
    )


def test_data_synth_reports_bad_values_in_one_line(tmp_path: Path) -> None:
    out = tmp_path / "never"
    result = CliRunner().invoke(main, ["data", "synth", "--out", str(out), "--knob", "noise"])
    assert result.exit_code == 2 and result.stderr == "error: --knob noise: expected KEY=VALUE, got 'noise'\n"
    result = CliRunner().invoke(main, ["data", "synth", "--out", str(out), "--size", "0x4"])
    assert result.exit_code == 2 and result.stderr == "error: --size 0x4: sides must be positive, got '0x4'\n"
    assert not out.exists()


def test_plot_masks_reports_bad_frames_in_one_line(tmp_path: Path) -> None:
    args = ["plot", "masks", str(tmp_path / "missing.pth"), "--out", str(tmp_path / "f.png"), "--frames"]
    result = CliRunner().invoke(main, [*args, "2,x"])
    assert result.exit_code == 2
    assert result.stderr == "error: --frames 2,x: expected a comma list of integers, got '2,x'\n"
