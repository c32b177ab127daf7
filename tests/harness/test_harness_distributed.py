"""Distributed evaluation: two gloo ranks on CPU give exactly the single-process record's metrics.

The ranks are two ``python -m vssbench run`` processes with the environment torchrun would set
(RANK, LOCAL_RANK, WORLD_SIZE, MASTER_ADDR, MASTER_PORT), so the CLI path is what is tested.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from tests.helpers import run_args
from vssbench.config import RunConfig
from vssbench.data import VSPWDataset, synthesize
from vssbench.harness import normalize_config, run_evaluation
from vssbench.results import read_videos_file

METRICS = ("mIoU", "wIoU", "mIoU_mmseg", "mVC8", "mVC16", "aAcc", "mAcc")


@pytest.mark.slow
def test_two_gloo_ranks_equal_a_single_process_run(tmp_path: Path, launch_two_ranks) -> None:
    root = synthesize(tmp_path / "mini", videos=6, frames=18, size=(32, 48), seed=0)
    config = RunConfig(
        method="segformer", data=str(root), resolution=(32, 48), warmup=0, repeats=1, threads=1
    )
    single = run_evaluation(config, out=tmp_path / "single", progress=False)

    args = [
        sys.executable,
        "-m",
        "vssbench",
        *run_args(root, tmp_path / "dist", "--method", "segformer", "--json"),
    ]
    results = launch_two_ranks(args, 180)
    for returncode, _, err in results:
        assert returncode == 0, err
    assert results[1][1] == ""  # ranks > 0 print nothing on stdout
    (record,) = json.loads(results[0][1])  # --json prints a list, also for one row

    assert record["world_size"] == 2 and record["fps_protocol"]["scope"] == "rank 0 only"
    assert record["config_hash"] == normalize_config(config).config_hash
    assert record["num_frames"] == 54 and record["num_videos"] == 3
    for key in METRICS + ("vc_windows", "diagnostics"):
        assert record[key] == single[key], key  # exact: same per-video states summed in the same order
    run_dir = Path(record["run_dir"])
    videos = VSPWDataset(root, "val").videos
    assert [e["video"] for e in read_videos_file(run_dir / "videos.rank0.jsonl")] == videos[0::2]
    assert [e["video"] for e in read_videos_file(run_dir / "videos.rank1.jsonl")] == videos[1::2]
    assert json.loads((run_dir / "record.json").read_text()) == record

    # Resume reads every rank's file: a single process finds all videos done and, with nothing left
    # to evaluate, returns the saved record without measuring or writing anything.
    resumed = run_evaluation(config, out=tmp_path / "dist", resume=True, progress=False)
    assert resumed == record and resumed["world_size"] == 2
    for key in METRICS:
        assert resumed[key] == single[key], key


def test_a_bad_world_size_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    from vssbench.errors import OptionError
    from vssbench.harness import setup_distributed

    monkeypatch.setenv("WORLD_SIZE", "two")
    with pytest.raises(OptionError, match="WORLD_SIZE must be an integer, got 'two'"):
        setup_distributed("cpu")
