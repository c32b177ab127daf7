"""Test-time resize/normalize and the clip augmentation (alignment, shared params, crop rule)."""

from __future__ import annotations

import colorsys

import numpy as np
import pytest
import torch
from PIL import Image

from vssbench.data import IMAGENET_MEAN, IMAGENET_STD, ClipAugment, TestTransform, keep_ratio_size
from vssbench.data.transforms import PhotometricParams, hsv_to_rgb_u8, rgb_to_hsv_u8


@pytest.mark.parametrize(
    "hw, expected",
    [
        ((1080, 1920), (480, 853)),
        ((180, 320), (480, 853)),
        ((480, 853), (480, 853)),
        ((720, 1280), (480, 853)),
        ((32, 48), (480, 720)),  # limited by the short side: 480 / 32 = 15
        ((1920, 1080), (853, 480)),  # portrait: (long, short) limits apply to either orientation
        ((100, 1000), (85, 853)),  # very wide: limited by the long side, 100 * 0.853 + 0.5 -> 85
    ],
)
def test_keep_ratio_size(hw: tuple[int, int], expected: tuple[int, int]) -> None:
    assert keep_ratio_size(*hw, (480, 853)) == expected
    assert keep_ratio_size(*hw, (853, 480)) == expected


def test_test_transform_sizes() -> None:
    assert TestTransform().output_size(180, 320) == (480, 853)
    assert TestTransform(size_divisor=32).output_size(1080, 1920) == (480, 864)
    assert TestTransform((64, 96), keep_ratio=False).output_size(180, 320) == (64, 96)
    assert TestTransform((60, 90), keep_ratio=False, size_divisor=32).output_size(5, 5) == (64, 96)


def test_test_transform_normalizes_rgb() -> None:
    colour = (10, 200, 30)
    image = Image.new("RGB", (48, 32), colour)
    out = TestTransform()(image)
    assert out.shape == (1, 3, 480, 720) and out.dtype == torch.float32
    for c in range(3):
        expected = (colour[c] - IMAGENET_MEAN[c]) / IMAGENET_STD[c]
        torch.testing.assert_close(out[0, c], torch.full((480, 720), expected), atol=1e-5, rtol=0)


def test_test_transform_accepts_arrays_and_keeps_size() -> None:
    arr = np.random.default_rng(0).integers(0, 256, (24, 40, 3), dtype=np.uint8)
    out = TestTransform((24, 40))(arr)
    assert out.shape == (1, 3, 24, 40)
    back = out[0].permute(1, 2, 0).numpy() * np.array(IMAGENET_STD) + np.array(IMAGENET_MEAN)
    np.testing.assert_allclose(back, arr, atol=1e-3)


def test_hsv_matches_colorsys_and_round_trips() -> None:
    rng = np.random.default_rng(1)
    rgb = rng.integers(0, 256, (3000, 3), dtype=np.uint8)
    hsv = rgb_to_hsv_u8(rgb)
    ref = np.array([colorsys.rgb_to_hsv(*(v / 255.0 for v in c)) for c in rgb.tolist()])
    hue_err = np.abs((hsv[:, 0].astype(float) * 2 - ref[:, 0] * 360 + 180) % 360 - 180)
    assert hue_err.max() <= 1.0 + 1e-9  # OpenCV stores hue in 2-degree steps
    np.testing.assert_allclose(hsv[:, 1], ref[:, 1] * 255, atol=0.5 + 1e-9)
    np.testing.assert_array_equal(hsv[:, 2], rgb.max(axis=1))
    back = hsv_to_rgb_u8(hsv)
    assert np.abs(back.astype(int) - rgb).max() <= 4  # 8-bit HSV quantization


def test_photometric_steps_hand_worked() -> None:
    img = np.array([[[100, 50, 200]]], dtype=np.uint8)
    bright = PhotometricParams(brightness=20.0, contrast_first=True, contrast=None, saturation=None, hue=None)
    np.testing.assert_array_equal(bright.apply(img), [[[120, 70, 220]]])
    contrast = PhotometricParams(
        brightness=None, contrast_first=False, contrast=1.5, saturation=None, hue=None
    )
    np.testing.assert_array_equal(contrast.apply(img), [[[150, 75, 255]]])  # clipped at 255
    grey = np.full((1, 1, 3), 90, dtype=np.uint8)
    hue = PhotometricParams(brightness=None, contrast_first=False, contrast=None, saturation=2.0, hue=17)
    np.testing.assert_array_equal(hue.apply(grey), grey)  # no saturation to scale, no hue to turn


def _coded_clip(
    t: int, h: int, w: int, seed: int, cell: int = 8
) -> tuple[list[Image.Image], list[np.ndarray]]:
    """Frames whose grey level encodes the label (label k -> colour 10k), different per frame."""
    rng = np.random.default_rng(seed)
    images, labels = [], []
    for _ in range(t):
        coarse = rng.integers(0, 20, size=(h // cell, w // cell)).astype(np.uint8)
        coarse[rng.random(coarse.shape) < 0.1] = 255  # ignored cells must stay aligned too
        label = np.kron(coarse, np.ones((cell, cell), dtype=np.uint8))
        grey = np.where(label == 255, 0, label.astype(np.int64) * 10).astype(np.uint8)
        images.append(Image.fromarray(np.repeat(grey[..., None], 3, axis=2)))
        labels.append(label)
    return images, labels


def _denormalize(images: torch.Tensor) -> np.ndarray:
    mean = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
    return (images * std + mean).numpy()


@pytest.mark.parametrize("seed", range(6))
def test_clip_augment_keeps_image_and_label_aligned(seed: int) -> None:
    t, h, w = 3, 48, 72
    images, labels = _coded_clip(t, h, w, seed, cell=12)
    aug = ClipAugment(scale=(96, 64), ratio_range=(0.5, 2.0), crop=(40, 40), photometric=False, seed=seed)
    out_images, out_labels, params = aug.apply(images, labels)
    assert out_images.shape == (t, 3, 40, 40) and out_labels.shape == (t, 40, 40)
    assert out_labels.dtype == torch.int64

    # Independent reference: resize every label with nearest neighbour, crop and flip by the
    # drawn parameters. Every frame differs, so this also proves all frames got the same ones.
    rh, rw = params.resized
    # Keep-ratio resize of (96, 64) x ratio in [0.5, 2]: factor in [0.5, 2] x min(96/72, 64/48).
    assert 32 <= rh <= 128 and abs(rw / rh - w / h) < 0.05
    for i, label in enumerate(labels):
        ref = np.asarray(Image.fromarray(label).resize((rw, rh), Image.NEAREST))
        ref = ref[params.crop_top : params.crop_top + 40, params.crop_left : params.crop_left + 40]
        if params.flip:
            ref = ref[:, ::-1]
        pad = np.full((40, 40), 255, dtype=np.int64)
        pad[: ref.shape[0], : ref.shape[1]] = ref
        np.testing.assert_array_equal(out_labels[i].numpy(), pad)

    # The image agrees with its label at every pixel whose 5x5 neighbourhood has one label (the
    # bilinear image resize, antialiased when shrinking, blends colours only across label borders;
    # the 2-pixel rim of the crop is left out since its neighbours outside the crop are unknown).
    grey = _denormalize(out_images)
    assert np.allclose(grey[:, 0], grey[:, 1], atol=1e-3) and np.allclose(grey[:, 0], grey[:, 2], atol=1e-3)
    lab = out_labels.numpy()
    padded = np.pad(lab, ((0, 0), (2, 2), (2, 2)), constant_values=-1)  # crop edges: unknown outside
    uniform = np.ones_like(lab, dtype=bool)
    for dy in range(5):
        for dx in range(5):
            uniform &= padded[:, dy : dy + lab.shape[1], dx : dx + lab.shape[2]] == lab
    valid = uniform & (lab != 255)
    assert valid.mean() > 0.2
    np.testing.assert_allclose(grey[:, 0][valid], lab[valid] * 10.0, atol=1.0)
    ignored = uniform & (lab == 255) & (np.arange(40)[:, None] < rh - params.crop_top)
    np.testing.assert_allclose(grey[:, 0][ignored & (np.arange(40) < rw - params.crop_left)], 0.0, atol=1.0)


def test_clip_augment_pads_small_images() -> None:
    images, labels = _coded_clip(2, 16, 24, seed=0)
    aug = ClipAugment(
        scale=(24, 16), ratio_range=None, crop=(32, 32), flip_prob=0.0, photometric=False, seed=0
    )
    out_images, out_labels, params = aug.apply(images, labels)
    assert params.resized == (16, 24) and (params.crop_top, params.crop_left) == (0, 0)
    assert out_images.shape == (2, 3, 32, 32)
    assert (out_labels[:, 16:, :] == 255).all() and (out_labels[:, :, 24:] == 255).all()
    assert (out_images[:, :, 16:, :] == 0).all() and (out_images[:, :, :, 24:] == 0).all()
    np.testing.assert_array_equal(out_labels[:, :16, :24].numpy(), np.stack(labels))


def test_clip_augment_flip_prob_one_mirrors() -> None:
    images, labels = _coded_clip(2, 16, 24, seed=3)
    aug = ClipAugment(scale=(24, 16), ratio_range=None, crop=None, flip_prob=1.0, photometric=False, seed=0)
    _, out_labels = aug(images, labels)
    np.testing.assert_array_equal(out_labels.numpy(), np.stack(labels)[:, :, ::-1])


def test_clip_augment_photometric_shared_across_frames() -> None:
    frame = np.random.default_rng(0).integers(0, 256, (32, 32, 3), dtype=np.uint8)
    label = np.zeros((32, 32), dtype=np.uint8)
    for seed in range(5):
        aug = ClipAugment(scale=(32, 32), ratio_range=None, crop=None, flip_prob=0.0, seed=seed)
        out, _, params = aug.apply([frame, frame, frame], [label] * 3)
        assert params.photometric[0] == params.photometric[1] == params.photometric[2]
        torch.testing.assert_close(out[0], out[1], atol=0, rtol=0)
        torch.testing.assert_close(out[0], out[2], atol=0, rtol=0)
    per_frame = ClipAugment(scale=(32, 32), ratio_range=None, crop=None, per_frame_photometric=True, seed=0)
    _, _, params = per_frame.apply([frame] * 4, [label] * 4)
    assert len(set(params.photometric)) > 1


def _crop_ok(window: np.ndarray, ratio: float) -> bool:
    counts = np.bincount(window.ravel(), minlength=256)[:255]
    counts = counts[counts > 0]
    return len(counts) > 1 and counts.max() / counts.sum() < ratio


def test_clip_augment_cat_max_ratio_rule() -> None:
    # Left half class 2, right half class 1: a 50x50 crop at column offset l (0..50) is accepted
    # iff 12.5 < l < 37.5, i.e. about half of the crops see one class over 75% of their pixels.
    # The rule redraws those (up to 10 times), judged on the last frame.
    label = np.ones((100, 100), dtype=np.uint8)
    label[:, :50] = 2
    frame = np.zeros((100, 100, 3), dtype=np.uint8)
    chosen_ok, free_ok = [], []
    for seed in range(30):
        for ratio, record in ((0.75, chosen_ok), (1.0, free_ok)):
            aug = ClipAugment(
                scale=(100, 100),
                ratio_range=None,
                crop=(50, 50),
                cat_max_ratio=ratio,
                flip_prob=0.0,
                photometric=False,
                seed=seed,
            )
            _, out_labels, params = aug.apply([frame, frame], [np.zeros_like(label), label])
            window = label[params.crop_top : params.crop_top + 50, params.crop_left : params.crop_left + 50]
            np.testing.assert_array_equal(out_labels[1].numpy(), window)
            record.append(_crop_ok(window, 0.75))
    assert all(chosen_ok)
    assert not all(free_ok)  # without the rule, bad crops do occur


def test_clip_augment_rejects_mismatched_frames() -> None:
    images, labels = _coded_clip(2, 16, 24, seed=0)
    with pytest.raises(ValueError, match="frame 1"):
        ClipAugment(seed=0)(images, [labels[0], labels[1][:8]])
    with pytest.raises(ValueError, match="as many labels"):
        ClipAugment(seed=0)(images, labels[:1])
