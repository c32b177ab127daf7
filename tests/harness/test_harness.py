"""The evaluation harness: records, exact metrics, resume, sweeps, profile, conditions comparison.

A synthetic VSPW-mini with 3 val videos x 18 frames at 32x48 is evaluated at its native size with
a random-init SegFormer-B0 (warm-up 0, one FPS repeat, one thread so that runs are bit-comparable).
"""

from __future__ import annotations

import csv
import itertools
import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from vssbench import data as vdata
from vssbench.config import RunConfig
from vssbench.data import CLASS_NAMES, VSPWDataset, load_prediction
from vssbench.errors import DataError, OptionError
from vssbench.harness import evaluate as evaluate_module
from vssbench.harness import (
    expand_backbones,
    expand_methods,
    normalize_config,
    profile_method,
    run_evaluation,
    run_sweep,
)
from vssbench.harness import runner as runner_module
from vssbench.methods import available, create
from vssbench.metrics import confusion_matrix, iou_from_confusion, mean_vc, vc_window_scores
from vssbench.results import (
    ACCURACY_KEYS,
    DESIGN_KEYS,
    RECORD_KEYS,
    RunStore,
    compare_records,
    empty_record,
    format_table,
    read_videos_file,
)

METRICS = ("mIoU", "wIoU", "mIoU_mmseg", "mVC8", "mVC16", "aAcc", "mAcc")


# --- a deliberately failing method, registered once --------------------------------------------


# --- fixtures ------------------------------------------------------------------------------------


def tiny_config(root: Path, **changes: Any) -> RunConfig:
    fields = dict(
        method="segformer", backbone="b0", data=str(root), resolution=(32, 48), warmup=0, repeats=1, threads=1
    )
    fields.update(changes)
    return RunConfig(**fields)


@pytest.fixture(scope="module")
def baseline(data_root: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    out = tmp_path_factory.mktemp("runs")
    preds = tmp_path_factory.mktemp("preds")
    record = run_evaluation(tiny_config(data_root), out=out, save_preds=preds, progress=False)
    return {"record": record, "out": out, "preds": preds}


# --- the record and the store --------------------------------------------------------------------
def test_run_writes_a_complete_record(baseline: dict[str, Any], data_root: Path) -> None:
    record = baseline["record"]
    assert set(DESIGN_KEYS) <= set(record)
    assert set(record) == set(RECORD_KEYS)
    assert record["method"] == "segformer" and record["backbone"] == "b0"
    assert record["num_videos"] == 3 and record["num_frames"] == 54
    assert record["split"] == "val" and record["interval"] == 4 and record["resolution"] == [32, 48]
    assert record["options"] == {
        "interval": 4,
        "decoder_dim": 256,
        "drop_path_rate": 0.1,
        "dropout": 0.1,
        "loss_reduction": "mmseg",
    }
    for key in METRICS:
        assert 0.0 <= record[key] <= 1.0, key
    assert record["vc_windows"] == {"mVC8": 3 * (18 - 8), "mVC16": 3 * (18 - 16)}
    assert record["params"] == sum(p.numel() for p in create("segformer", "b0").parameters())
    assert record["params_groups"]["encoder"] + record["params_groups"]["decoder"] == record["params"]
    assert record["gmacs_keyframe"] > 0 and record["gmacs_per_frame"] > 0
    # An image method does the same work on every frame.
    assert record["gmacs_nonkeyframe"] == pytest.approx(record["gmacs_keyframe"])
    assert record["gmacs_input_shape"] == [1, 3, 32, 48]
    assert record["fps"] > 0 and record["fps_protocol"]["repeats"] == 1
    assert record["fps"] == pytest.approx(4 / record["fps_protocol"]["interval_time_s"])
    assert record["data_time_per_frame"] > 0 and record["model_time_per_frame"] > 0
    assert record["diagnostics"] == {"keyframe": 1.0}
    assert record["random_init"] is True and record["checkpoint"] is None
    assert record["threads"] == 1 and record["dtype"] == "float32" and record["world_size"] == 1
    assert record["error"] is None and record["resumed_videos"] == 0

    run_dir = Path(record["run_dir"])
    config = normalize_config(tiny_config(data_root))
    assert run_dir == baseline["out"] / f"segformer-b0-{config.config_hash}"
    assert record["config_hash"] == config.config_hash and record["conditions_hash"] == config.conditions_hash
    assert json.loads((run_dir / "record.json").read_text()) == record
    assert RunConfig.from_json((run_dir / "config.json").read_text()) == config
    assert "WARNING: no --checkpoint" in (run_dir / "log.txt").read_text()
    entries = read_videos_file(run_dir / "videos.jsonl")
    assert [e["video"] for e in entries] == VSPWDataset(data_root, "val").videos
    assert [e["num_frames"] for e in entries] == [18, 18, 18]
    with open(run_dir / "per_class.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert [r["name"] for r in rows] == list(CLASS_NAMES) and len(rows) == 124


def test_metrics_equal_an_independent_recomputation(baseline: dict[str, Any], data_root: Path) -> None:
    """Run segformer by hand and feed the functional metric code directly."""
    record = baseline["record"]
    dataset = VSPWDataset(data_root, "val")
    transform = vdata.TestTransform(resolution=(32, 48))
    previous = torch.get_num_threads()
    torch.set_num_threads(1)  # as the run did: same kernels, same logits
    try:
        torch.manual_seed(0)
        model = create("segformer", "b0", num_classes=124, interval=4).eval()
        conf = np.zeros((124, 124), np.int64)
        scores: dict[int, list[np.ndarray]] = {8: [], 16: []}
        with torch.no_grad():
            for video in dataset.videos:
                model.reset()
                preds, gts = [], []
                for index, stem in enumerate(dataset.frame_stems(video)):
                    frame = dataset.load_frame(video, index, transform)
                    logits = model.step(frame.image)
                    up = F.interpolate(logits, size=frame.label.shape, mode="bilinear", align_corners=False)
                    pred = up.argmax(1)[0].numpy().astype(np.uint8)
                    # --save-preds wrote exactly these predictions
                    assert np.array_equal(load_prediction(baseline["preds"] / video / f"{stem}.png"), pred)
                    preds.append(pred)
                    gts.append(frame.label)
                conf += confusion_matrix(np.stack(preds), np.stack(gts))
                for clip in scores:
                    scores[clip].append(vc_window_scores(np.stack(gts), np.stack(preds), clip))
    finally:
        torch.set_num_threads(previous)
    iou = iou_from_confusion(conf)
    for key in ("mIoU", "wIoU", "mIoU_mmseg", "aAcc"):
        assert record[key] == pytest.approx(iou[key], rel=1e-12, abs=1e-15), key
    assert record["mVC8"] == pytest.approx(mean_vc(scores[8]), rel=1e-12)
    assert record["mVC16"] == pytest.approx(mean_vc(scores[16]), rel=1e-12)
    for clip in (8, 16):
        assert record["mVC_video_mean"][f"mVC{clip}"] == pytest.approx(
            mean_vc(scores[clip], average="videos"), rel=1e-12
        )
    with open(Path(record["run_dir"]) / "per_class.csv", newline="") as f:
        saved = [r["iou"] for r in csv.DictReader(f)]
    for value, expected in zip(saved, iou["IoU"]):
        assert (value == "") if math.isnan(expected) else float(value) == pytest.approx(expected, rel=1e-12)


# --- resume -----------------------------------------------------------------------------------
class Killed(Exception):
    """Stands in for the process being killed."""


def test_resume_after_a_kill_equals_an_uninterrupted_run(
    baseline: dict[str, Any], data_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = tiny_config(data_root)
    original = runner_module._evaluate_video
    calls: list[str] = []

    def killed_mid_third_video(adapter: Any, dataset: Any, video: str, *args: Any, **kwargs: Any) -> Any:
        calls.append(video)
        if len(calls) == 3:
            real_step, counter = adapter.step, itertools.count()

            def step(image: torch.Tensor) -> torch.Tensor:
                if next(counter) == 5:
                    raise Killed()
                return real_step(image)

            adapter.step = step  # instance attribute: only this adapter, only this run
        return original(adapter, dataset, video, *args, **kwargs)

    monkeypatch.setattr(runner_module, "_evaluate_video", killed_mid_third_video)
    with pytest.raises(Killed):
        run_evaluation(config, out=tmp_path, progress=False)
    run_dir = tmp_path / f"segformer-b0-{normalize_config(config).config_hash}"
    videos_file = run_dir / "videos.jsonl"
    assert len(read_videos_file(videos_file)) == 2
    assert not (run_dir / "record.json").exists()
    assert "FAILED: Killed" in (run_dir / "log.txt").read_text()
    # A line cut off mid-write (the process died while appending the third video).
    third = VSPWDataset(data_root, "val").videos[2]
    with open(videos_file, "ab") as f:
        f.write(b'{"video":"' + third.encode() + b'","num_frames":18,"state":{"confusion":[[0,')
    assert len(read_videos_file(videos_file)) == 2

    calls.clear()
    monkeypatch.setattr(
        runner_module, "_evaluate_video", lambda *a, **k: (calls.append(a[2]), original(*a, **k))[1]
    )
    resumed = run_evaluation(config, out=tmp_path, resume=True, progress=False)
    assert calls == [third]  # only the unfinished video was evaluated again
    assert resumed["resumed_videos"] == 2
    expected = baseline["record"]
    for key in METRICS + (
        "num_frames",
        "num_videos",
        "vc_windows",
        "config_hash",
        "diagnostics",
        "params",
        "gmacs_per_frame",
    ):
        assert resumed[key] == expected[key], key  # exact: the same float sums in the same order
    assert (run_dir / "per_class.csv").read_text() == (
        Path(expected["run_dir"]) / "per_class.csv"
    ).read_text()
    text = videos_file.read_bytes()
    assert text.endswith(b"\n") and len(read_videos_file(videos_file)) == 3


def test_resume_refuses_a_folder_whose_config_differs(data_root: Path, tmp_path: Path) -> None:
    config = normalize_config(tiny_config(data_root))
    store = RunStore(tmp_path, config)
    store.prepare(resume=False)
    saved = json.loads(store.config_path.read_text())
    saved["seed"], saved["metric_preset"] = 7, "cffm"
    store.config_path.write_text(json.dumps(saved))
    with pytest.raises(OptionError, match=r"differs in metric_preset, seed"):
        run_evaluation(config, out=tmp_path, resume=True, progress=False)


def test_without_resume_an_existing_folder_is_replaced(data_root: Path, tmp_path: Path) -> None:
    config = tiny_config(data_root, max_videos=1, max_frames=3)
    run_dir = tmp_path / f"segformer-b0-{normalize_config(config).config_hash}"
    run_dir.mkdir(parents=True)
    (run_dir / "stale.txt").write_text("from an earlier run")
    (run_dir / "videos.jsonl").write_text('{"video": "x", "state": {}}\n')
    record = run_evaluation(config, out=tmp_path, progress=False)
    assert not (run_dir / "stale.txt").exists()
    assert [e["video"] for e in read_videos_file(run_dir / "videos.jsonl")] == [
        VSPWDataset(data_root).videos[0]
    ]
    assert record["num_videos"] == 1 and record["num_frames"] == 3 and record["resumed_videos"] == 0


def test_videos_file_tolerates_only_a_truncated_last_line(tmp_path: Path) -> None:
    path = tmp_path / "videos.jsonl"
    good = json.dumps({"video": "a", "state": {}})
    path.write_text(good + "\n" + '{"video": "b", "sta')
    assert [e["video"] for e in read_videos_file(path)] == ["a"]
    path.write_text(good + "\n" + "garbage\n" + good + "\n")
    with pytest.raises(DataError, match=r"videos.jsonl: line 2 is not valid JSON"):
        read_videos_file(path)


# --- sweeps, errors, bad data -----------------------------------------------------------------
def test_a_failing_method_becomes_an_error_row_and_the_sweep_goes_on(
    data_root: Path, tmp_path: Path, failing_method: str
) -> None:
    configs = [
        tiny_config(data_root, method=failing_method, max_videos=1, max_frames=3),
        tiny_config(data_root, max_videos=1, max_frames=3),
    ]
    records = run_sweep(configs, out=tmp_path, progress=False)
    assert [r["method"] for r in records] == ["test_failing", "segformer"]
    broken, ok = records
    assert broken["error"] == "RuntimeError: deliberate failure in step"
    assert all(broken[k] is None for k in ACCURACY_KEYS) and broken["fps"] is None
    assert set(broken) == set(RECORD_KEYS)
    assert ok["error"] is None and 0.0 <= ok["mIoU"] <= 1.0 and ok["num_frames"] == 3
    broken_dir = Path(broken["run_dir"])
    assert json.loads((broken_dir / "record.json").read_text())["error"] == broken["error"]
    log = (broken_dir / "log.txt").read_text()
    assert "Traceback" in log and "deliberate failure in step" in log
    table = format_table(records).splitlines()
    assert table[0].split()[-1] == "error"
    assert table[2].startswith("test_failing") and table[2].endswith(
        "RuntimeError: deliberate failure in step"
    )
    assert table[3].startswith("segformer")


def test_a_bad_option_stops_the_sweep_before_anything_runs(data_root: Path, tmp_path: Path) -> None:
    configs = [tiny_config(data_root), tiny_config(data_root, options={"treshold": "0.5"})]
    with pytest.raises(OptionError, match="treshold.*decoder_dim"):
        run_sweep(configs, out=tmp_path, progress=False)
    assert list(tmp_path.iterdir()) == []  # checked up front: not even the valid row ran


def test_bad_data_stops_with_an_error_naming_the_file(data_root: Path, tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"train_only\.txt"):
        run_sweep([tiny_config(data_root, split="train_only")], out=tmp_path / "runs", progress=False)


# --- profile ------------------------------------------------------------------------------------
def decoder_params(channels: tuple[int, ...], dim: int, classes: int) -> int:
    """SegFormer head: linear_c{i} (C_i*E + E), fuse conv 4E*E without bias + BN (2E), pred E*K + K."""
    return sum(c * dim + dim for c in channels) + 4 * dim * dim + 2 * dim + dim * classes + classes


def test_profile_has_the_run_keys_and_passes_decoder_dim(baseline: dict[str, Any]) -> None:
    config = RunConfig(method="segformer", resolution=(64, 64), warmup=0, repeats=1, interval=2, threads=1)
    record = profile_method(config)
    assert set(record) == set(baseline["record"]) == set(RECORD_KEYS)
    assert all(record[k] is None for k in ACCURACY_KEYS)
    assert record["kind"] == "profile" and record["num_frames"] == 0 and record["interval"] == 2
    assert record["params"] == baseline["record"]["params"]
    assert (
        record["gmacs_input_shape"] == [1, 3, 64, 64] and record["gmacs_per_frame"] > 0 and record["fps"] > 0
    )
    small = profile_method(config.replace(options={"decoder_dim": 128}))
    b0 = (32, 64, 160, 256)
    assert record["params"] - small["params"] == decoder_params(b0, 256, 124) - decoder_params(b0, 128, 124)
    assert small["options"]["decoder_dim"] == 128 and small["gmacs_per_frame"] < record["gmacs_per_frame"]


def test_profile_frames_video_is_a_real_looking_video_and_random_the_costly_end() -> None:
    config = RunConfig(method="tfc", resolution=(64, 96), warmup=0, repeats=1, interval=3, threads=1)
    video = profile_method(config)
    noise = profile_method(config, frames="random")
    assert video["profile_frames"] == "video" and noise["profile_frames"] == "random"
    assert "synthetic video" in video["fps_protocol"]["frames"]
    # Consecutive frames of a video are similar: TFC updates far fewer points than on noise.
    assert video["diagnostics"]["updated_fraction"] < 0.5 < noise["diagnostics"]["updated_fraction"]
    assert video["gmacs_nonkeyframe"] < noise["gmacs_nonkeyframe"]
    assert video["gmacs_keyframe"] == pytest.approx(
        noise["gmacs_keyframe"]
    )  # keyframes do not depend on content
    with pytest.raises(OptionError, match="profile frames"):
        profile_method(config, frames="webcam")


# --- config expansion and normalization; conditions comparison -----------------------------------
def test_method_and_backbone_expansion() -> None:
    assert expand_methods("segformer") == ["segformer"]
    assert expand_methods("segformer, feature_reuse,segformer") == ["segformer", "feature_reuse"]
    assert expand_methods("*") == available()
    assert expand_methods("feat*") == ["feature_reuse"]
    assert expand_backbones("b0,b[12]") == ["b0", "b1", "b2"]
    with pytest.raises(OptionError, match=r"unknown method 'nope'; available: .*segformer"):
        expand_methods("segformer,nope")
    with pytest.raises(OptionError, match=r"pattern 'x\*' matches nothing"):
        expand_methods("x*")
    with pytest.raises(OptionError, match=r"unknown backbone 'b9'"):
        expand_backbones("b9")


def test_normalize_config_makes_equal_conditions_hash_equally(tmp_path: Path) -> None:
    typed = normalize_config(RunConfig(method="segformer", options={"decoder_dim": 128}, interval=2))
    from_cli = normalize_config(
        RunConfig(method="segformer", options={"decoder_dim": "128", "interval": "2"})
    )
    assert typed == from_cli and typed.config_hash == from_cli.config_hash
    assert typed.interval == 2 and typed.options == {"decoder_dim": 128}
    assert normalize_config(RunConfig(method="segformer")).interval == 4  # the method's default
    with pytest.raises(OptionError, match=r"--interval 3 and --set interval=2"):
        normalize_config(RunConfig(method="segformer", options={"interval": 2}, interval=3))
    relative = normalize_config(RunConfig(method="segformer", data="."))
    assert relative.data == str(Path(".").resolve())


def test_compare_records_names_the_differing_conditions() -> None:
    a = empty_record(normalize_config(RunConfig(method="segformer")))
    b = empty_record(normalize_config(RunConfig(method="feature_reuse", backbone="b1")))
    for r in (a, b):
        r.update(device="cpu (x)", torch="2", threads=2, dtype="float32", world_size=1)
    same = compare_records([a, b])
    assert same == {"same": True, "differing": {}, "note": None}
    c = empty_record(normalize_config(RunConfig(method="segformer", resolution=(240, 427))))
    c.update(device="cpu (x)", torch="2", threads=1, dtype="float32", world_size=1)
    result = compare_records([a, b, c])
    assert result["same"] is False
    assert set(result["differing"]) == {"resolution", "threads"}
    assert result["note"] == "conditions differ: resolution (A/B 480x853, C 240x427), threads (A/B 2, C 1)"
    assert format_table([a, b, c]).splitlines()[-1] == (
        "note: conditions differ: resolution (segformer-b0 #1/feature_reuse-b1 480x853, "
        "segformer-b0 #3 240x427), threads (segformer-b0 #1/feature_reuse-b1 2, segformer-b0 #3 1)"
    )


# --- what reaches the method and the metrics ----------------------------------------------------
def test_interval_reaches_the_method_and_diagnostics_are_frame_means(data_root: Path, tmp_path: Path) -> None:
    record = run_evaluation(
        tiny_config(data_root, method="feature_reuse", interval=3, max_videos=1), out=tmp_path, progress=False
    )
    assert record["options"]["interval"] == 3 and record["interval"] == 3
    assert record["diagnostics"] == {"keyframe": 6 / 18}  # keyframes at t = 0, 3, ..., 15
    steps = record["gmacs_per_step"]
    assert len(steps) == 3 and steps[1] == steps[2] < steps[0]  # non-keyframes skip stages 3-4
    assert record["gmacs_nonkeyframe"] == pytest.approx(steps[1])
    assert record["gmacs_per_frame"] == pytest.approx(sum(steps) / 3)


def test_diagnostics_skip_nan_and_count_bools() -> None:
    sums: dict[str, float] = {}
    counts: dict[str, int] = {}
    infos = [
        {"keyframe": True, "similarity": float("nan"), "name": "x", "map": torch.zeros(2, 2)},
        {"keyframe": False, "similarity": 0.5, "updated": torch.tensor(0.25)},
        {"keyframe": False, "similarity": 0.7, "updated": np.float32(0.75)},
    ]
    for info in infos:
        evaluate_module.accumulate_diagnostics(sums, counts, info)
    entry = {"diagnostics": {k: [sums[k], counts[k]] for k in sums}}
    assert evaluate_module.combine_diagnostics([entry, entry]) == pytest.approx(
        {"keyframe": 1 / 3, "similarity": 0.6, "updated": 0.5}
    )


def test_the_cffm_preset_drops_short_videos_from_every_metric(data_root: Path, tmp_path: Path) -> None:
    record = run_evaluation(
        tiny_config(data_root, metric_preset="cffm", max_videos=1, max_frames=16),
        out=tmp_path,
        progress=False,
    )
    assert record["metric_preset"] == "cffm" and record["skipped_videos"] == 1
    assert record["mIoU"] is None and record["mVC8"] is None  # no video left: null, never a made-up number
    assert record["vc_windows"] == {"mVC8": 0, "mVC16": 0}
    assert json.loads((Path(record["run_dir"]) / "record.json").read_text())["mIoU"] is None


def test_rows_that_failed_before_running_are_not_compared() -> None:
    ran = empty_record(normalize_config(RunConfig(method="segformer")))
    ran.update(device="cpu (x)", torch="2", threads=2, dtype="float32", world_size=1)
    failed = empty_record(RunConfig(method="segformer", resolution=(64, 64), options={"bogus": 1}))
    failed["error"] = "OptionError: unknown option 'bogus'"
    assert compare_records([ran, failed])["same"] is True
    assert "conditions differ" not in format_table([ran, failed])
