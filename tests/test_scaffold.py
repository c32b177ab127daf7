"""``vssbench new-method``: the package it writes, and that the method in it works as written.

The written adapter is imported from the written source tree (its ``src`` on ``sys.path``) into a
private copy of the registry, so no pip install is needed and no other test sees the method.
"""

from __future__ import annotations

import ast
import importlib
import re
import sys
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

from vssbench.cli import main
from vssbench.errors import OptionError
from vssbench.methods import available, base, create
from vssbench.scaffold import class_name, write_method_package
from vssbench.testing import check_method

NAME = "vssb_scaffolded"


def files_under(folder: Path) -> set[str]:
    return {p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file()}


def test_writes_the_package_files(tmp_path: Path) -> None:
    out = write_method_package(NAME, tmp_path / "pkg")
    assert out == tmp_path / "pkg"
    assert files_under(out) == {
        "pyproject.toml",
        "README.md",
        f"src/{NAME}/__init__.py",
        f"src/{NAME}/adapter.py",
        f"tests/test_{NAME}.py",
    }
    project = (out / "pyproject.toml").read_text(encoding="utf-8")
    assert f'name = "{NAME}"' in project and 'dependencies = ["vssbench"]' in project
    # The entry point is what makes an installed package's method known to vssbench.
    assert f'[project.entry-points."vssbench.methods"]\n{NAME} = "{NAME}.adapter"\n' in project
    assert '[tool.setuptools.packages.find]\nwhere = ["src"]\n' in project
    for path in out.rglob("*.py"):
        ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    test_source = (out / f"tests/test_{NAME}.py").read_text(encoding="utf-8")
    assert "check_method" in test_source and f'"{NAME}"' in test_source


def test_an_existing_empty_folder_is_used(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    write_method_package(NAME, tmp_path / "empty")
    assert (tmp_path / "empty" / "src" / NAME / "adapter.py").is_file()


@pytest.mark.parametrize(("name", "expected"), [("mymethod", "Mymethod"), ("my_method2", "MyMethod2")])
def test_class_name(name: str, expected: str) -> None:
    assert class_name(name) == expected


@pytest.fixture
def scaffolded(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> str:
    """The scaffold's method, imported from its written source tree into a private registry."""
    available()  # installed plugins are discovered into the real registry before it is copied
    monkeypatch.setattr(base, "_REGISTRY", dict(base._REGISTRY))
    out = write_method_package(NAME, tmp_path / "pkg")
    monkeypatch.syspath_prepend(str(out / "src"))
    importlib.import_module(f"{NAME}.adapter")
    yield NAME
    for module in [m for m in sys.modules if m == NAME or m.startswith(f"{NAME}.")]:
        del sys.modules[module]


def test_the_written_method_registers_itself(scaffolded: str) -> None:
    assert scaffolded in available()
    assert base.method_info(scaffolded).type == "Image"


def test_the_written_method_keeps_the_contract(scaffolded: str) -> None:
    # A few cheap rules (the written tests run them all once the package is installed).
    check_method(scaffolded, checks=["step_output", "reset", "batch", "steady_state", "sampler", "options"])


def test_the_written_method_is_segformer_with_its_weights(scaffolded: str) -> None:
    """As written, the method is a per-frame SegFormer: same state_dict keys, same init from the
    same seed, so the same logits (and SegFormer checkpoints load into it)."""
    torch.manual_seed(0)
    segformer = create("segformer", "b0", num_classes=5)
    torch.manual_seed(0)
    written = create(scaffolded, "b0", num_classes=5)
    assert written.state_dict().keys() == segformer.state_dict().keys()
    frames = [torch.randn(1, 3, 64, 64, generator=torch.Generator().manual_seed(t)) for t in range(2)]
    segformer.reset()
    written.reset()
    with torch.inference_mode():
        for frame in frames:
            assert torch.equal(written.step(frame), segformer.step(frame))


@pytest.mark.parametrize("name", ["MyMethod", "my-method", "1method", "_private", "class", "", "my method"])
def test_a_bad_name_is_refused_naming_it(name: str, tmp_path: Path) -> None:
    with pytest.raises(OptionError, match=re.escape(f"bad method name {name!r}")):
        write_method_package(name, tmp_path / "pkg")
    assert not (tmp_path / "pkg").exists()


def test_a_name_that_shadows_a_module_is_refused(tmp_path: Path) -> None:
    with pytest.raises(OptionError, match="'json'.*already importable"):
        write_method_package("json", tmp_path / "pkg")


@pytest.mark.parametrize(
    ("name", "shadowed"), [("mix_transformer", "MixTransformer"), ("base", "BaseOptions")]
)
def test_a_name_whose_class_shadows_an_import_of_the_adapter_is_refused(
    name: str, shadowed: str, tmp_path: Path
) -> None:
    with pytest.raises(OptionError, match=f"'{name}'.*would shadow {shadowed}"):
        write_method_package(name, tmp_path / "pkg")


def test_a_taken_name_is_refused(tmp_path: Path) -> None:
    with pytest.raises(OptionError, match="'segformer' is already registered"):
        write_method_package("segformer", tmp_path / "pkg", taken=["segformer", "tfc"])


def test_a_non_empty_folder_is_refused_and_left_alone(tmp_path: Path) -> None:
    (tmp_path / "pkg").mkdir()
    (tmp_path / "pkg" / "notes.txt").write_text("mine", encoding="utf-8")
    with pytest.raises(OptionError, match="is not empty"):
        write_method_package(NAME, tmp_path / "pkg")
    assert files_under(tmp_path / "pkg") == {"notes.txt"}
    (tmp_path / "file").write_text("", encoding="utf-8")
    with pytest.raises(OptionError, match="is a file"):
        write_method_package(NAME, tmp_path / "file")


def test_the_command_writes_and_says_what_next(tmp_path: Path) -> None:
    result = CliRunner().invoke(main, ["new-method", NAME, "--out", str(tmp_path / "pkg")])
    assert result.exit_code == 0, result.output
    assert f"wrote {tmp_path / 'pkg'}" in result.output
    assert f"pip install -e {tmp_path / 'pkg'}" in result.output
    assert f"vssbench run --method {NAME}" in result.output
    assert (tmp_path / "pkg" / "src" / NAME / "adapter.py").is_file()


def test_the_command_refuses_a_registered_name_with_one_line(tmp_path: Path) -> None:
    result = CliRunner().invoke(main, ["new-method", "segformer", "--out", str(tmp_path / "pkg")])
    assert result.exit_code == 2
    assert "error: method name 'segformer' is already registered" in result.output
    assert not (tmp_path / "pkg").exists()
