"""`vssbench train` flags that reach the saved config."""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner

from vssbench.cli import main


def test_param_rule_flag_reaches_config_json(tmp_path: Path) -> None:
    base = ["train", "--method", "segformer", "--iters", "1", "--batch-size", "1", "--crop", "32x32"]
    base += ["--val-every", "0", "--quiet"]
    result = CliRunner().invoke(main, [*base, "--param-rule", "timm", "--out", str(tmp_path / "a")])
    assert result.exit_code == 0, result.output
    assert json.loads((tmp_path / "a" / "config.json").read_text())["param_rule"] == "timm"
    result = CliRunner().invoke(main, [*base, "--out", str(tmp_path / "b")])
    assert json.loads((tmp_path / "b" / "config.json").read_text())["param_rule"] == "mmcv"  # the default
    result = CliRunner().invoke(main, [*base, "--param-rule", "bogus", "--out", str(tmp_path / "c")])
    assert result.exit_code == 2 and "'bogus' is not one of 'mmcv', 'timm'" in result.output
    assert not (tmp_path / "c").exists()
