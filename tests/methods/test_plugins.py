"""Plugin methods: installed entry points, --plugin modules, failure isolation, origins, own backbones."""

from __future__ import annotations

import json
import sys
import textwrap
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

from vssbench.cli import main
from vssbench.config import RunConfig
from vssbench.errors import OptionError
from vssbench.harness import expand_backbones, normalize_config
from vssbench.methods import base
from vssbench.results.records import empty_record

#: A plugin module: one per-frame method on a backbone of its own ("tiny"), registered on import.
PLUGIN = """
import torch
from torch import nn

from vssbench.methods import BaseOptions, MethodInfo, VideoSegmenter, register


@register
class {cls}(VideoSegmenter):
    info = MethodInfo("{name}", paper="none (test plugin)", type="Image", backbones=("tiny",))
    Options = BaseOptions

    def __init__(self, backbone="tiny", num_classes=124, options=None):
        super().__init__(options)
        self.conv = nn.Conv2d(3, num_classes, 1)

    def segment(self, image):
        return self.conv(image), {{"keyframe": True}}
"""


@pytest.fixture
def registry(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """A private registry state and a folder on sys.path for plugin modules and fake distributions."""
    monkeypatch.setattr(base, "_REGISTRY", dict(base._REGISTRY))
    monkeypatch.setattr(base, "_FAILED", {})
    monkeypatch.setattr(base, "_FAILED_EXC", {})
    monkeypatch.setattr(base, "_LOADED_MODULES", set())
    monkeypatch.setattr(base, "_DISCOVERED", False)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delenv(base.PLUGINS_ENV, raising=False)
    yield tmp_path
    for name in [m for m in sys.modules if m.startswith("vssb_test_")]:
        del sys.modules[name]


def write_module(folder: Path, module: str, source: str) -> None:
    (folder / f"{module}.py").write_text(textwrap.dedent(source), encoding="utf-8")


def write_distribution(folder: Path, dist: str, version: str, entry_points: dict[str, str]) -> None:
    """A minimal installed distribution (a .dist-info folder) declaring ``vssbench.methods`` entry points."""
    info = folder / f"{dist.replace('-', '_')}-{version}.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(
        f"Metadata-Version: 2.1\nName: {dist}\nVersion: {version}\n", encoding="utf-8"
    )
    lines = "".join(f"{name} = {value}\n" for name, value in entry_points.items())
    (info / "entry_points.txt").write_text(f"[vssbench.methods]\n{lines}", encoding="utf-8")


def test_plugin_module_registers_with_its_origin_and_own_backbone(registry: Path) -> None:
    write_module(registry, "vssb_test_good", PLUGIN.format(cls="Good", name="vssb_good"))
    result = CliRunner().invoke(main, ["--plugin", "vssb_test_good", "methods", "--json"])
    assert result.exit_code == 0, result.output
    listed = {d["name"]: d for d in json.loads(result.stdout)}
    assert listed["vssb_good"]["origin"] == "module vssb_test_good"
    assert listed["vssb_good"]["backbones"] == ["tiny"]
    assert listed["segformer"]["origin"] == "builtin"
    # The declared backbone is accepted, any other is refused with the method's own list.
    model = base.create("vssb_good", backbone="tiny", num_classes=3)
    model.reset()
    assert model.step(torch.zeros(1, 3, 8, 8)).shape == (1, 3, 8, 8)
    with pytest.raises(OptionError, match="unknown backbone 'b0' for method 'vssb_good'; available: tiny"):
        base.create("vssb_good", backbone="b0")
    assert "tiny" in expand_backbones("*") and expand_backbones("tiny") == ["tiny"]
    with pytest.raises(OptionError, match="available: tiny"):
        normalize_config(RunConfig(method="vssb_good", backbone="b1"))
    # Records say which method produced them.
    record = empty_record(RunConfig(method="vssb_good", backbone="tiny"))
    assert (record["method_origin"], record["method_version"]) == ("module vssb_test_good", None)
    builtin = empty_record(RunConfig(method="tfc"))
    assert builtin["method_origin"] == "builtin" and builtin["method_version"] == base.__version__


def test_environment_variable_names_plugin_modules(registry: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write_module(registry, "vssb_test_env", PLUGIN.format(cls="Env", name="vssb_env"))
    monkeypatch.setenv(base.PLUGINS_ENV, "vssb_test_env, ")
    assert "vssb_env" in base.available()
    assert base.method_origin("vssb_env") == {"origin": "module vssb_test_env", "version": None}


def test_a_plugin_module_that_raises_is_one_warning(registry: Path) -> None:
    write_module(registry, "vssb_test_broken", "raise RuntimeError('boom at import')\n")
    result = CliRunner().invoke(main, ["--plugin", "vssb_test_broken", "methods"])
    assert result.exit_code == 0
    warnings = [line for line in result.stderr.splitlines() if line.startswith("warning:")]
    assert warnings == [
        "warning: plugin module 'vssb_test_broken' failed to load: RuntimeError: boom at import"
    ]
    assert "tfc  [E&S]" in result.stdout and "segformer  [Image]" in result.stdout
    assert "Traceback" not in result.stderr
    debug = CliRunner().invoke(main, ["--debug", "--plugin", "vssb_test_broken", "methods"])
    assert debug.exit_code == 0 and "Traceback" in debug.stderr and "boom at import" in debug.stderr
    # An unknown name says which plugins failed, so a typo and a broken plugin are told apart.
    with pytest.raises(
        OptionError, match="unknown method 'nope'.*plugins that failed to load.*boom at import"
    ):
        base.create("nope")


def test_installed_entry_points_load_by_themselves_and_failures_are_isolated(registry: Path) -> None:
    write_module(registry, "vssb_test_ep", PLUGIN.format(cls="Ep", name="vssb_ep"))
    write_module(registry, "vssb_test_ep_broken", "import not_a_module_anywhere\n")
    write_distribution(registry, "vssb-test-dist", "1.2.3", {"vssb_ep": "vssb_test_ep"})
    write_distribution(
        registry,
        "vssb-test-bad",
        "0.0.1",
        {"vssb_bad": "vssb_test_ep_broken", "vssb_gone": "vssb_test_ep:Missing"},
    )
    result = CliRunner().invoke(main, ["methods", "--json"])
    assert result.exit_code == 0, result.output
    listed = {d["name"]: d for d in json.loads(result.stdout)}
    assert (listed["vssb_ep"]["origin"], listed["vssb_ep"]["version"]) == ("vssb-test-dist", "1.2.3")
    assert {"segformer", "tfc", "cffm", "mrcfa", "tdnet", "feature_reuse"} <= set(listed)
    warnings = [line for line in result.stderr.splitlines() if line.startswith("warning:")]
    assert len(warnings) == 2
    assert (
        "'vssb_bad'" in warnings[0]
        and "ModuleNotFoundError" in warnings[0]
        and "vssb-test-bad 0.0.1" in warnings[0]
    )
    assert "'vssb_gone'" in warnings[1] and "Missing" in warnings[1]
    # Asking for a failed entry point by name: exit 2 with the same reason, never another method.
    run = CliRunner().invoke(main, ["run", "--method", "vssb_bad", "--max-videos", "1", "--max-frames", "1"])
    assert run.exit_code == 2
    assert "error: method 'vssb_bad': plugin entry point 'vssb_bad'" in run.stderr
    assert "ModuleNotFoundError" in run.stderr


def test_a_plugin_that_reuses_a_name_is_refused_and_the_builtin_stays(registry: Path) -> None:
    write_module(registry, "vssb_test_dup", PLUGIN.format(cls="Dup", name="tfc"))
    base.load_plugins(["vssb_test_dup"])
    failures = base.plugin_failures()
    assert (
        "already registered" in failures["vssb_test_dup"]
        and "vssbench.methods.tfc.TFC" in failures["vssb_test_dup"]
    )
    assert base.method_origin("tfc")["origin"] == "builtin"
    assert type(base.create("tfc")).__module__ == "vssbench.methods.tfc"


def test_logits_of_the_wrong_shape_are_an_error_row_naming_the_method(
    registry: Path, data_root: Path
) -> None:
    # 7 channels instead of num_classes: without the check, argmax over 7 classes would be scored.
    write_module(
        registry,
        "vssb_test_shape",
        PLUGIN.format(cls="Shape", name="vssb_shape").replace(
            "nn.Conv2d(3, num_classes, 1)", "nn.Conv2d(3, 7, 1)"
        ),
    )
    args = [
        "--plugin",
        "vssb_test_shape",
        "run",
        "--method",
        "vssb_shape",
        "--backbone",
        "tiny",
        "--data",
        str(data_root),
        "--max-videos",
        "1",
        "--max-frames",
        "2",
        "--efficiency",
        "none",
        "--quiet",
        "--out",
        str(registry / "runs"),
        "--json",
    ]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 1
    (record,) = json.loads(result.stdout)
    assert record["error"].startswith(
        "ValueError: method 'vssb_shape': step() returned logits of shape (1, 7, "
    )
    assert "expected (1, 124, " in record["error"] and record["mIoU"] is None
