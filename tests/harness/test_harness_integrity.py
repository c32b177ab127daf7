"""Harness integrity (issue 9): nothing mixed up silently, no clutter, interruptible, self-explaining records.

Every test runs a random-init B0 on the shared tiny synthetic VSPW tree (3 val videos x 18 frames at
32x48), mostly on 1 video x 2 frames with ``--efficiency none`` so that the whole file stays fast.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import torch
from click.testing import CliRunner

from tests.helpers import run_args
from vssbench.cli import main
from vssbench.config import RunConfig
from vssbench.errors import OptionError
from vssbench.harness import build_configs, run_evaluation
from vssbench.methods import create
from vssbench.models.checkpoint import file_digest, save_checkpoint
from vssbench.results import RECORD_KEYS, format_table
from vssbench.results.records import options_tag


def small(root: Path, out: Path, *extra: str) -> list[str]:
    """One video of two frames, accuracy only: the cheapest complete run."""
    return run_args(root, out, "--max-videos", "1", "--max-frames", "2", "--efficiency", "none", *extra)


def invoke(args: list[str]) -> Any:
    return CliRunner().invoke(main, args)


def one_line_error(result: Any) -> str:
    assert result.exit_code == 2, result.output
    assert result.stdout == "" and "Traceback" not in result.stderr
    assert result.stderr.startswith("error: ") and result.stderr.count("\n") == 1, result.stderr
    return result.stderr


def _random_segformer_checkpoint(factory: pytest.TempPathFactory, backbone: str, seed: int) -> Path:
    path = factory.mktemp("ckpt") / f"segformer-{backbone}.pth"
    torch.manual_seed(seed)
    save_checkpoint(create("segformer", backbone=backbone), path)
    return path


@pytest.fixture(scope="module")
def b1_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _random_segformer_checkpoint(tmp_path_factory, "b1", seed=0)


@pytest.fixture(scope="module")
def b0_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _random_segformer_checkpoint(tmp_path_factory, "b0", seed=1)


# --- data integrity -------------------------------------------------------------------------------
def test_sweep_save_preds_keeps_every_rows_pngs(data_root: Path, tmp_path: Path) -> None:
    preds = tmp_path / "preds"
    result = invoke(
        small(
            data_root,
            tmp_path / "runs",
            "--method",
            "segformer,tfc",
            "--set",
            "tfc.threshold=0.5",
            "--save-preds",
            str(preds),
        )
    )
    assert result.exit_code == 0, result.output
    rows = sorted(p.name for p in preds.iterdir())
    assert rows == ["segformer-b0", "tfc-b0-threshold=0.5"]
    for row in rows:
        pngs = sorted(p.relative_to(preds / row).as_posix() for p in (preds / row).rglob("*.png"))
        assert len(pngs) == 2 and all(p.count("/") == 1 for p in pngs)  # <video>/<stem>.png
    # A single row keeps the VSPW submission layout: DIR/<video>/<stem>.png.
    single = tmp_path / "single"
    assert (
        invoke(
            small(data_root, tmp_path / "runs", "--method", "segformer", "--save-preds", str(single))
        ).exit_code
        == 0
    )
    assert len([p for p in single.rglob("*.png") if p.parent.parent == single]) == 2


def test_checkpoint_digest_is_in_config_and_record_and_a_changed_file_is_refused_on_resume(
    data_root: Path, tmp_path: Path, b0_checkpoint: Path
) -> None:
    ckpt = tmp_path / "model.pth"
    ckpt.write_bytes(b0_checkpoint.read_bytes())
    sha, size = file_digest(ckpt)
    out = tmp_path / "runs"
    result = invoke(small(data_root, out, "--method", "segformer", "--checkpoint", str(ckpt), "--json"))
    assert result.exit_code == 0, result.output
    (record,) = json.loads(result.stdout)
    assert record["checkpoint_sha256"] == sha and record["checkpoint_size"] == size == ckpt.stat().st_size
    assert record["config"]["checkpoint_sha256"] == sha and record["non_strict"] is False
    # New weights under the same path: resuming would mix two models in one record.
    torch.manual_seed(5)
    save_checkpoint(create("segformer", backbone="b0"), ckpt)
    new_sha, _ = file_digest(ckpt)
    refused = invoke(small(data_root, out, "--method", "segformer", "--checkpoint", str(ckpt), "--resume"))
    message = one_line_error(refused)
    assert str(ckpt) in message and sha in message and new_sha in message
    assert len(list(out.iterdir())) == 1  # nothing new was written


def test_config_hash_without_a_checkpoint_is_unchanged_by_the_new_fields() -> None:
    import hashlib

    # (decoder="reference" is the decoder every older result was made with;
    # see config.HASH_OMITTED_AT_DEFAULT)
    config = RunConfig(method="segformer", options={"interval": 2}, decoder="reference")
    d = config.to_dict()
    for key in ("checkpoint_sha256", "checkpoint_size", "non_strict", "decoder"):
        d.pop(key, None)
    text = json.dumps(d, sort_keys=True, separators=(",", ":"), default=str)
    assert config.config_hash == hashlib.sha256(text.encode()).hexdigest()[:12]
    assert config.replace(checkpoint_sha256="ab" * 32).config_hash != config.config_hash


def test_scoped_set_applies_to_its_method_only() -> None:
    configs = build_configs("segformer,tfc", "b0", options={"tfc.threshold": "0.5", "interval": "2"})
    by_method = {c.method: c.options for c in configs}
    assert by_method == {"segformer": {"interval": "2"}, "tfc": {"threshold": "0.5", "interval": "2"}}
    # A plain key goes to the methods that have it; scoped wins over plain.
    configs = build_configs("segformer,tfc", "b0", options={"threshold": "0.5", "tfc.threshold": "0.7"})
    assert {c.method: c.options for c in configs} == {"segformer": {}, "tfc": {"threshold": "0.7"}}
    with pytest.raises(
        OptionError, match=r"no method of this run has option 'treshold' \(segformer: .*tfc: "
    ):
        build_configs("segformer,tfc", "b0", options={"treshold": "0.5"})
    with pytest.raises(OptionError, match=r"method 'cffm' is not in this run \(segformer\)"):
        build_configs("segformer", "b0", options={"cffm.depth": "1"})
    with pytest.raises(OptionError, match=r"tfc has no option 'treshold'"):
        build_configs("tfc", "b0", options={"tfc.treshold": "0.5"})


def test_scoped_set_on_the_command_line(data_root: Path, tmp_path: Path) -> None:
    result = invoke(
        small(data_root, tmp_path, "--method", "segformer,tfc", "--set", "tfc.threshold=0.5", "--json")
    )
    assert result.exit_code == 0, result.output
    records = {r["method"]: r for r in json.loads(result.stdout)}
    assert (
        records["tfc"]["options"]["threshold"] == 0.5 and "threshold" not in records["segformer"]["options"]
    )
    assert records["tfc"]["options_tag"] == "threshold=0.5" and records["segformer"]["options_tag"] == ""
    assert all(r["error"] is None for r in records.values())
    bad = one_line_error(
        invoke(small(data_root, tmp_path, "--method", "segformer", "--set", "threshold=0.5"))
    )
    assert "no method of this run has option 'threshold' (segformer:" in bad


# --- clutter and interruption ---------------------------------------------------------------------
@pytest.mark.parametrize(
    "extra",
    [
        ["--set", "bogus=1"],
        ["--split", "missing"],
        ["--checkpoint", "/nonexistent/weights.pth"],
        ["--threads", "0"],
        ["--checkpoint-format", "bogus"],
        ["--max-frames", "0"],
    ],
    ids=["option", "split", "checkpoint", "threads", "checkpoint-format", "max-frames"],
)
def test_a_failed_start_is_one_line_exit_2_and_leaves_no_folder(
    data_root: Path, tmp_path: Path, extra: list[str]
) -> None:
    out = tmp_path / "runs"
    one_line_error(invoke(run_args(data_root, out, "--method", "segformer,tfc", *extra)))
    assert not out.exists() or list(out.iterdir()) == []


def test_a_missing_data_root_leaves_no_folder(tmp_path: Path) -> None:
    out = tmp_path / "runs"
    one_line_error(invoke(run_args(tmp_path / "nowhere", out, "--method", "segformer")))
    assert not out.exists() or list(out.iterdir()) == []


def test_a_sweep_row_that_fails_to_load_still_gets_its_record(
    data_root: Path, tmp_path: Path, b0_checkpoint: Path
) -> None:
    result = invoke(
        small(data_root, tmp_path, "--method", "segformer,tfc", "--checkpoint", str(b0_checkpoint))
    )
    assert result.exit_code == 1
    folders = {p.name.split("-")[0]: p for p in tmp_path.iterdir()}
    failed = json.loads((folders["tfc"] / "record.json").read_text())
    assert "CheckpointError" in failed["error"] and "msda" in failed["error"]
    assert json.loads((folders["segformer"] / "record.json").read_text())["error"] is None


def test_rerun_without_resume_says_on_stderr_that_it_replaces_finished_videos(
    data_root: Path, tmp_path: Path
) -> None:
    assert invoke(small(data_root, tmp_path, "--method", "segformer")).exit_code == 0
    again = invoke(small(data_root, tmp_path, "--method", "segformer"))
    assert again.exit_code == 0
    assert (
        "WARNING: replacing" in again.stderr and "its 1 finished videos are evaluated again" in again.stderr
    )


@pytest.mark.slow
def test_efficiency_modes(data_root: Path, tmp_path: Path) -> None:
    records = {}
    for mode in ("full", "fast", "none"):
        result = invoke(
            small(data_root, tmp_path / mode, "--method", "segformer", "--efficiency", mode, "--json")
        )
        assert result.exit_code == 0, result.output
        (records[mode],) = json.loads(result.stdout)
    full, fast, none = records["full"], records["fast"], records["none"]
    assert (
        full["efficiency"] == "full"
        and full["params_dead"] == 0
        and full["params_inference"] == full["params"]
    )
    assert (
        fast["params_dead"] is None and fast["gmacs_per_frame"] == full["gmacs_per_frame"] and fast["fps"] > 0
    )
    assert none["params"] == full["params"] and none["gmacs_per_frame"] is None and none["fps"] is None
    assert none["mIoU"] == full["mIoU"] == fast["mIoU"]
    spread = full["fps_spread"]
    assert spread["min"] <= spread["median"] <= spread["max"] and spread["relative"] >= 0


@pytest.mark.slow
def test_a_resume_with_nothing_left_measures_and_writes_nothing(data_root: Path, tmp_path: Path) -> None:
    args = small(data_root, tmp_path, "--method", "segformer", "--efficiency", "fast")
    assert invoke(args).exit_code == 0
    (run_dir,) = tmp_path.iterdir()
    before = {p.name: (p.read_bytes(), p.stat().st_mtime_ns) for p in run_dir.iterdir()}
    result = invoke([*args, "--resume", "--json"])
    assert result.exit_code == 0, result.output
    assert "nothing left to evaluate" in result.stderr
    assert {p.name: (p.read_bytes(), p.stat().st_mtime_ns) for p in run_dir.iterdir()} == before
    (record,) = json.loads(result.stdout)
    assert record == json.loads(before["record.json"][0])
    # Asking for more than was measured does measure again.
    more = invoke(
        [*small(data_root, tmp_path, "--method", "segformer", "--efficiency", "full"), "--resume", "--json"]
    )
    (full,) = json.loads(more.stdout)
    assert full["efficiency"] == "full" and full["params_dead"] == 0


def _default_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_DFL)


@pytest.mark.slow
def test_ctrl_c_exits_130_and_resume_gives_the_uninterrupted_metrics(data_root: Path, tmp_path: Path) -> None:
    out = tmp_path / "runs"
    # Upsampled frames make each video take long enough (~2-3 s) to be interrupted in the middle, also
    # when this process is descheduled for a while between seeing the first video and the signal.
    common = [
        "--data",
        str(data_root),
        "--method",
        "segformer",
        "--size",
        "192x288",
        "--max-frames",
        "18",
        "--threads",
        "1",
        "--efficiency",
        "none",
        "--quiet",
    ]
    proc = subprocess.Popen(
        [sys.executable, "-m", "vssbench", "run", *common, "--out", str(out)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        # A shell's background job ignores SIGINT and its children inherit that; Ctrl-C in a terminal
        # reaches a process with the default disposition, so the run gets that one.
        preexec_fn=_default_sigint,
    )
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None:
        files = list(out.glob("*/videos.jsonl"))
        if files and files[0].read_bytes().count(b"\n") >= 1:
            break
        time.sleep(0.01)
    proc.send_signal(signal.SIGINT)
    stdout, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 130, (proc.returncode, stdout, stderr)
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert lines[-1].startswith("interrupted after ") and lines[-1].endswith(
        " of 3 videos; continue with the same command plus --resume"
    ), stderr
    assert "Traceback" not in stderr and stdout == ""
    finished = int(lines[-1].split()[2])
    assert 1 <= finished < 3
    (run_dir,) = out.iterdir()
    assert (run_dir / "videos.jsonl").read_bytes().count(b"\n") == finished and not (
        run_dir / "record.json"
    ).exists()

    resumed = invoke(["run", *common, "--out", str(out), "--resume", "--json"])
    assert resumed.exit_code == 0, resumed.output
    (record,) = json.loads(resumed.stdout)
    assert record["resumed_videos"] == finished
    straight = invoke(["run", *common, "--out", str(tmp_path / "straight"), "--json"])
    (reference,) = json.loads(straight.stdout)
    for key in ("mIoU", "wIoU", "mIoU_mmseg", "mVC8", "mVC16", "aAcc", "num_frames"):
        assert record[key] == reference[key], key


def test_ctrl_c_held_back_under_the_default_disposition_still_ends_the_process() -> None:
    # With SIGINT at SIG_DFL (no Python handler), a Ctrl-C held back while a results line is written
    # must still end the process once the line is done, not be dropped.
    code = (
        "import signal\n"
        "from vssbench.harness.runner import _sigint_deferred\n"
        "signal.signal(signal.SIGINT, signal.SIG_DFL)\n"
        "with _sigint_deferred():\n"
        "    signal.raise_signal(signal.SIGINT)\n"
        "    print('line written', flush=True)\n"
        "print('went on')\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.returncode == -signal.SIGINT and proc.stdout == "line written\n", (
        proc.returncode,
        proc.stdout,
    )


# --- errors that keep the one-line contract --------------------------------------------------------
def test_a_b1_checkpoint_into_b0_gives_a_short_message_naming_b1(
    data_root: Path, tmp_path: Path, b1_checkpoint: Path
) -> None:
    result = invoke(small(data_root, tmp_path, "--method", "segformer", "--checkpoint", str(b1_checkpoint)))
    assert result.exit_code == 2 and "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) <= 10, result.stderr
    assert (
        "this looks like a b1 checkpoint (stage-1 width 64, blocks 2-2-2-2), "
        "the model is b0: pass --backbone b1" in (result.stderr)
    )
    assert "--non-strict" in result.stderr and "strict=False" not in result.stderr
    assert not tmp_path.exists() or list(tmp_path.iterdir()) == []


def test_non_strict_loads_what_fits_and_the_record_says_so(
    data_root: Path, tmp_path: Path, b1_checkpoint: Path
) -> None:
    result = invoke(
        small(
            data_root,
            tmp_path,
            "--method",
            "segformer",
            "--backbone",
            "b1",
            "--decoder-dim",
            "768",
            "--checkpoint",
            str(b1_checkpoint),
            "--non-strict",
            "--json",
        )
    )
    assert result.exit_code == 0, result.output
    (record,) = json.loads(result.stdout)
    assert record["non_strict"] is True and record["options_tag"] == "decoder_dim=768"
    load = record["checkpoint_load"]
    assert load["mismatched"] > 0 and load["missing"] == load["unexpected"] == 0
    assert "decode_head.linear_c1.proj.weight" in load["mismatched_keys"]
    assert "WARNING: --non-strict: partial load" in result.stderr


def test_decoder_dim_diagnosis(tmp_path: Path, b1_checkpoint: Path) -> None:
    result = invoke(
        [
            "profile",
            "--method",
            "segformer",
            "--backbone",
            "b1",
            "--decoder-dim",
            "768",
            "--size",
            "32x32",
            "--checkpoint",
            str(b1_checkpoint),
        ]
    )
    assert result.exit_code == 2 and len(result.stderr.strip().splitlines()) <= 10
    assert "decoder dim 256 in the file, 768 in the model: pass --decoder-dim 256" in result.stderr


def test_float16_on_cpu_warns_once(data_root: Path, tmp_path: Path) -> None:
    from vssbench.harness import sweep

    sweep._WARNED.discard("float16-cpu")
    result = invoke(small(data_root, tmp_path, "--method", "segformer,feature_reuse", "--dtype", "float16"))
    assert result.exit_code == 0, result.output
    assert result.stderr.count("--dtype float16 on the CPU is about 10x slower") == 1


# --- records that explain themselves ---------------------------------------------------------------
def _row(**fields: Any) -> dict[str, Any]:
    record: dict[str, Any] = dict.fromkeys(RECORD_KEYS)
    record.update(
        kind="run",
        method="tfc",
        backbone="b0",
        mIoU=0.5,
        wIoU=0.5,
        mVC8=0.9,
        mVC16=0.8,
        params=4.5e6,
        gmacs_per_frame=10.0,
        fps=5.0,
        options_tag="",
        resolution=[480, 853],
        input_size=[480, 853],
        vc_windows={"mVC8": 10, "mVC16": 3},
    )
    record.update(fields)
    return record


def test_table_shows_differing_options_missing_windows_and_the_measured_size() -> None:
    table = format_table(
        [
            _row(),
            _row(
                options_tag="threshold=0.5",
                mVC16=None,
                vc_windows={"mVC8": 4, "mVC16": 0},
                input_size=[480, 720],
            ),
        ]
    ).splitlines()
    assert table[0].split()[:3] == ["method", "backbone", "options"]
    assert table[2].split()[2] == "-" and table[3].split()[2] == "threshold=0.5"
    assert table[3].split()[6] == "n/a"
    assert "note: n/a: mVC16: no 16-frame window (every video has at most 16 frames)" in table
    assert (
        "note: GMACs and FPS measured at 480x720 instead of --size 480x853 "
        "(the data's aspect ratio at the resize)" in table
    )
    same = format_table([_row(), _row(backbone="b1")]).splitlines()
    assert "options" not in same[0] and not any("measured at" in line for line in same)


def test_options_tag_names_only_non_default_options() -> None:
    assert options_tag(RunConfig(method="tfc", options={"threshold": 0.8})) == ""
    assert options_tag(
        RunConfig(method="tfc", options={"threshold": "0.5", "interp": "hard"}, interval=6)
    ) == ("interval=6,interp=hard,threshold=0.5")
    assert options_tag(RunConfig(method="tfc", interval=4)) == ""


def test_run_folders_carry_the_options_tag(data_root: Path, tmp_path: Path) -> None:
    config = RunConfig(
        method="segformer",
        data=str(data_root),
        resolution=(32, 48),
        threads=1,
        max_videos=1,
        max_frames=2,
        interval=2,
    )
    record = run_evaluation(config, out=tmp_path, progress=False, efficiency="none")
    name = Path(record["run_dir"]).name
    assert name == f"segformer-b0-interval=2-{record['config_hash']}"


def test_json_is_always_a_list_and_json_lines_one_object_per_line(data_root: Path, tmp_path: Path) -> None:
    listed = invoke(small(data_root, tmp_path, "--method", "segformer", "--json"))
    assert isinstance(json.loads(listed.stdout), list) and len(json.loads(listed.stdout)) == 1
    lines = invoke(small(data_root, tmp_path, "--method", "segformer,feature_reuse", "--json-lines"))
    assert lines.exit_code == 0, lines.output
    parsed = [json.loads(line) for line in lines.stdout.splitlines()]
    assert [r["method"] for r in parsed] == ["segformer", "feature_reuse"]
    assert (
        invoke(small(data_root, tmp_path, "--method", "segformer", "--json", "--json-lines")).exit_code == 2
    )


def test_help_documents_json_and_save_preds_conventions() -> None:
    text = " ".join(invoke(["run", "--help"]).stdout.split())
    assert "always a list" in text and "--json-lines" in text and "jq" in text
    assert "0..123 (evaluation space" in text
    assert "DIR/<method>-<backbone>[-<options>]/<video>/<stem>.png" in text.replace(
        " ", ""
    )  # click breaks long words
    assert "130 when interrupted" in text
