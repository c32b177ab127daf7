"""Synthetic data difficulty: easy is the original generator; each knob moves the frames the right way."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from vssbench.data import VSPWDataset, render_video, synthesize, write_dataset
from vssbench.data import synth as S
from vssbench.errors import OptionError

SIZE = (48, 64)


def _video(frames: int = 6, seed: int = 3, **knobs: object) -> tuple[np.ndarray, np.ndarray]:
    """(images float [T, H, W, 3], labels [T, H, W]) of one rendered video with ``knobs`` set."""
    pairs = list(render_video(frames, SIZE, seed=seed, difficulty=S.EASY.replace(**knobs)))
    return np.stack([p[0] for p in pairs]).astype(np.float64), np.stack([p[1] for p in pairs])


def _files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_easy_is_the_original_generator(tmp_path: Path) -> None:
    # Digest of render_video(5, (32, 48), seed=7) computed with the generator before difficulty existed.
    h = hashlib.sha256()
    for image, raw in render_video(5, (32, 48), seed=7, difficulty="easy"):
        h.update(image.tobytes())
        h.update(raw.tobytes())
    assert h.hexdigest() == "1149a20c1956724bbe0ba35dd32b06237de7477aa4114f00014e30608eecfde5"
    a = _files(synthesize(tmp_path / "a", videos=2, frames=3, size=(32, 48), seed=1))
    b = _files(
        synthesize(tmp_path / "b", videos=2, frames=3, size=(32, 48), seed=1, difficulty=S.Difficulty())
    )
    assert a == b
    marker = json.loads(a[S.MARKER])
    assert "difficulty" not in marker and "knobs" not in marker  # the marker is the original one too


def test_preset_deterministic_and_marked(tmp_path: Path) -> None:
    kw = dict(videos=2, frames=4, size=(32, 48), seed=2)
    a = _files(synthesize(tmp_path / "a", difficulty="study", **kw))
    b = _files(synthesize(tmp_path / "b", difficulty="study", **kw))
    assert a == b
    c = _files(synthesize(tmp_path / "c", difficulty="study", **{**kw, "seed": 3}))
    assert any(c.get(k) != v for k, v in a.items() if k.endswith(".jpg"))
    marker = json.loads(a[S.MARKER])
    assert marker["difficulty"] == "study" and marker["knobs"] == S.PRESETS["study"].to_dict()
    d = json.loads(_files(synthesize(tmp_path / "d", difficulty="study", noise=1, **kw))[S.MARKER])
    assert d["difficulty"] == "study+knobs" and d["knobs"]["noise"] == 1.0


def test_photometric_knobs_leave_masks_alone() -> None:
    _, easy = _video()
    _, hard = _video(
        noise=12, brightness_flicker=0.2, white_balance_flicker=0.1, motion_blur=1.0, jpeg_quality=20
    )
    assert np.array_equal(easy, hard)


def test_noise_is_per_frame_with_the_given_std() -> None:
    clean, _ = _video(noise=0)
    for sigma in (3.0, 10.0):
        noisy, _ = _video(noise=sigma)
        residual = (noisy - clean)[(clean > 40) & (clean < 215)]  # away from clipping
        assert abs(residual.std() - sigma) < 0.1 * sigma
    # Temporal variance of a pixel: on a static frame pair only the noise changes it.
    scene = S._make_scene(
        np.random.default_rng(0), 2, *SIZE, S.EASY.replace(noise=8.0), np.random.default_rng(1)
    )
    f0 = S._render_frame(scene, 0, *SIZE, np.random.default_rng(5))[0].astype(float)
    f0b = S._render_frame(scene, 0, *SIZE, np.random.default_rng(6))[0].astype(float)
    assert 8.0 < (f0 - f0b).std() < 8.0 * np.sqrt(2) * 1.1  # two independent draws: ~ sqrt(2) sigma


def test_brightness_and_white_balance_flicker() -> None:
    clean, _ = _video(frames=10, noise=0)
    flick, _ = _video(frames=10, noise=0, brightness_flicker=0.15)
    ratio = np.log(flick.mean(axis=(1, 2, 3)) / clean.mean(axis=(1, 2, 3)))
    assert ratio.std() > 0.06  # per-frame mean brightness changes
    wb, _ = _video(frames=10, noise=0, white_balance_flicker=0.1)
    per_channel = np.log(wb.mean(axis=(1, 2)) / clean.mean(axis=(1, 2)))  # [T, 3]
    assert (per_channel[:, 0] - per_channel[:, 1]).std() > 0.03  # the channels drift apart
    steady, _ = _video(frames=10, noise=0, brightness_flicker=0.0)
    assert np.array_equal(steady, clean)


def test_jpeg_quality_lower_means_more_error(tmp_path: Path) -> None:
    kw = dict(videos=1, frames=3, size=SIZE, seed=4)
    errors = {}
    for q in (90, 25):
        knobs = S.EASY.replace(noise=0, jpeg_quality=q)
        root = synthesize(tmp_path / f"q{q}", difficulty=knobs, **kw)
        ds = VSPWDataset(root, "val")
        video = ds.videos[0]
        # render_video draws video 0 of seed s exactly as synthesize does.
        clean = np.stack([im for im, _ in render_video(3, SIZE, seed=4, difficulty=knobs)]).astype(float)
        jpg = np.stack(
            [np.asarray(Image.open(ds.image_path(video, s)).convert("RGB")) for s in ds.frame_stems(video)]
        )
        errors[q] = np.abs(jpg.astype(float) - clean).mean()
    assert errors[25] > 1.5 * errors[90]
    scene = S._make_scene(
        np.random.default_rng(0),
        40,
        *SIZE,
        S.EASY.replace(jpeg_quality=60, jpeg_jitter=20),
        np.random.default_rng(1),
    )
    q = [S._frame_quality(scene, t) for t in range(40)]
    assert min(q) >= 40 and max(q) <= 60 and len(set(q)) > 5


def _grad(images: np.ndarray) -> float:
    return float(np.abs(np.diff(images, axis=2)).mean())


def test_motion_blur_softens_frames() -> None:
    sharp, _ = _video(noise=0, speed=2.0)
    blurred, _ = _video(noise=0, speed=2.0, motion_blur=1.0)
    assert _grad(blurred) < 0.9 * _grad(sharp)


def _changed(labels: np.ndarray) -> float:
    return float((labels[1:] != labels[:-1]).mean())


def test_shake_and_speed_add_motion() -> None:
    _, calm = _video(frames=8)
    _, shaky = _video(frames=8, shake=3.0)
    _, fast = _video(frames=8, speed=3.0)
    assert _changed(shaky) > 1.3 * _changed(calm)
    assert _changed(fast) > 1.3 * _changed(calm)


def test_fast_objects_bounce_inside_the_frame() -> None:
    knobs = S.EASY.replace(speed=4.0, min_objects=5, max_objects=5)
    scene = S._make_scene(np.random.default_rng(0), 30, *SIZE, knobs, np.random.default_rng(1))
    movers = [o for o in scene.objects if o.bounce]
    assert len(movers) == 3  # all but the entering and the leaving one
    for t in range(30):
        for o in movers:
            assert 0.0 <= S._reflect(o.x0 + o.vx * t, float(SIZE[1])) <= SIZE[1]
    assert (
        S._reflect(-5.0, 100.0) == 5.0
        and S._reflect(130.0, 100.0) == 70.0
        and S._reflect(250.0, 100.0) == 50.0
    )


def _mean_colour(raw: int, lookalike: float) -> np.ndarray:
    u, v = np.meshgrid(np.arange(64, dtype=np.float32), np.arange(64, dtype=np.float32))
    return S._paint(raw, u.ravel(), v.ravel(), S._looks(lookalike)).mean(axis=0)


def test_lookalike_classes_converge_in_colour() -> None:
    for raw, partner in [(61, 49), (63, 62), (29, 2)]:
        assert S._PARTNERS[raw] == partner
        far = np.linalg.norm(_mean_colour(raw, 0.0) - _mean_colour(partner, 0.0))
        near = np.linalg.norm(_mean_colour(raw, 0.9) - _mean_colour(partner, 0.9))
        assert near < 0.35 * far
        same = S._looks(1.0)
        assert same[raw].base == pytest.approx(same[partner].base) and same[raw].alt == pytest.approx(
            same[partner].alt
        )
        texture = ("pattern", "period", "mix")
        assert [getattr(same[raw], k) for k in texture] != [getattr(same[partner], k) for k in texture]
    assert S._looks(0.0) is S._LOOKS


def test_thin_poles_are_thin_and_world_fixed() -> None:
    _, labels = _video(frames=6, thin=3, noise=0)
    pole = labels == S._POLE
    assert pole.any()
    widths = pole.sum(axis=2)[pole.any(axis=2)]  # pole pixels per row where there is one
    assert np.median(widths) <= 3 * 3  # each pole is at most ~3 px wide at 64 px width
    _, none = _video(frames=6, noise=0)
    assert not (none == S._POLE).any()


def test_class_pools_and_object_counts(tmp_path: Path) -> None:
    knobs = S.EASY.replace(object_classes=2, band_choices=1, min_objects=4, max_objects=4)
    root = synthesize(tmp_path / "few", videos=4, frames=2, size=(32, 48), seed=0, difficulty=knobs)
    values = set()
    for mask in (root / "data").rglob("*.png"):
        values |= set(np.unique(np.asarray(Image.open(mask))).tolist())
    allowed = {
        S.RAW_OTHERS,
        S.RAW_VOID,
        *S._OBJECTS[:2],
        S._TOP_BANDS[0],
        S._MIDDLE_BANDS[0],
        S._BOTTOM_BANDS[0],
    }
    assert values <= allowed and len(values & set(S._OBJECTS[:2])) >= 1
    scene = S._make_scene(np.random.default_rng(0), 4, 32, 48, knobs, np.random.default_rng(1))
    assert len(scene.objects) == 4  # 3 drawn with replacement from a pool of 2, plus "others"


def test_knob_validation_names_the_knob() -> None:
    with pytest.raises(OptionError, match="unknown difficulty knob 'nois'"):
        S.resolve_difficulty("easy", nois=3)
    with pytest.raises(OptionError, match="lookalike=1.5"):
        S.resolve_difficulty("easy", lookalike="1.5")
    with pytest.raises(OptionError, match="thin='two'"):
        S.resolve_difficulty("easy", thin="two")
    with pytest.raises(OptionError, match="unknown difficulty 'brutal'"):
        S.resolve_difficulty("brutal")
    assert S.resolve_difficulty("study", thin="2").thin == 2


def test_write_dataset_uses_the_preset_shape(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setitem(S.PRESET_SHAPES, "study", {"videos": 3, "frames": 2, "size": (32, 48)})
    meta = S.read_marker(write_dataset(tmp_path / "study"))
    assert meta is not None and (meta["videos"], meta["frames"], meta["size"]) == (3, 2, [32, 48])
    assert meta["difficulty"] == "study"
    monkeypatch.setitem(
        S.PRESET_SHAPES, "study", {"videos": 5, "val_videos": 1, "frames": 2, "size": (32, 48)}
    )
    meta = S.read_marker(write_dataset(tmp_path / "study-val"))
    assert meta is not None and meta["splits"] == {"val": 1, "test": 1, "train": 3}


def test_study_shape_trains_on_more_videos_than_it_evaluates() -> None:
    # The study's val split stays small (evaluation time) while training sees enough scenes that
    # every val class occurs in train; reproduce passes exactly these arguments.
    shape = S.PRESET_SHAPES["study"]
    assert shape["videos"] - shape["val_videos"] - 1 > shape["val_videos"]
    assert S.STUDY_SYNTH_ARGS["val_videos"] == shape["val_videos"]
    assert S.STUDY_SYNTH_ARGS["videos"] == shape["videos"]
    assert S.STUDY_SYNTH_ARGS["more_val_videos"] == 6  # 12 val videos in all, the train split unchanged


def test_cli_study_arguments(tmp_path: Path) -> None:
    from click.testing import CliRunner

    from vssbench.cli import main

    argv = [
        f"--{k.replace('_', '-')}={v}" for k, v in S.STUDY_SYNTH_ARGS.items()
    ]  # as `reproduce` passes them
    out = tmp_path / "study"
    result = CliRunner().invoke(
        main,
        [
            "data",
            "synth",
            "--out",
            str(out),
            *argv,
            "--videos",
            "2",
            "--val-videos",
            "1",
            "--frames",
            "2",
            "--size",
            "32x48",
            "--knob",
            "thin=1",
        ],
    )
    assert result.exit_code == 0, result.output
    meta = S.read_marker(out)
    assert meta["difficulty"] == "study+knobs" and meta["knobs"]["thin"] == 1 and meta["size"] == [32, 48]
    bad = CliRunner().invoke(main, ["data", "synth", "--out", str(tmp_path / "b"), "--knob", "speed=0"])
    assert bad.exit_code == 2 and bad.output.strip() == "error: difficulty knob speed=0.0: must be > 0"
