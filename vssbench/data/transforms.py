"""Test-time resize/normalize and the training augmentation applied alike to every frame of a clip.

Conventions follow mmsegmentation as used by SegFormer/CFFM/MRCFA on VSPW:

* keep-ratio resize to a (long, short) scale: factor ``s = min(long / long_side, short / short_side)``,
  new size ``int(w * s + 0.5) x int(h * s + 0.5)`` (so 1080x1920 and 180x320 both become 480x853);
* images are resized bilinearly (PIL BILINEAR), labels with nearest neighbour;
* normalization with the ImageNet mean/std in RGB order (values in 0..255).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image

from vssbench.data.labels import IGNORE_INDEX

IMAGENET_MEAN = (123.675, 116.28, 103.53)
IMAGENET_STD = (58.395, 57.12, 57.375)

ImageLike = Image.Image | np.ndarray


def keep_ratio_size(h: int, w: int, scale: tuple[int, int]) -> tuple[int, int]:
    """(h, w) after mmseg's keep-ratio resize to ``scale`` = (long, short) edge limits (in any order).

    The image grows or shrinks until one of its edges reaches its limit without the other one
    exceeding its own: ``s = min(long / max(h, w), short / min(h, w))``; returns
    ``(int(h * s + 0.5), int(w * s + 0.5))``.
    """
    if h <= 0 or w <= 0:
        raise ValueError(f"image sides must be positive, got {h}x{w}")
    long_edge, short_edge = max(scale), min(scale)
    s = min(long_edge / max(h, w), short_edge / min(h, w))
    return int(h * s + 0.5), int(w * s + 0.5)


def _round_up(value: int, divisor: int) -> int:
    return -(-value // divisor) * divisor


def to_rgb_array(image: ImageLike) -> np.ndarray:
    """A PIL image or an H x W x 3 uint8 RGB array -> a contiguous H x W x 3 uint8 RGB array."""
    if isinstance(image, Image.Image):
        return np.asarray(image.convert("RGB") if image.mode != "RGB" else image)
    arr = np.asarray(image)
    if arr.ndim != 3 or arr.shape[2] != 3 or arr.dtype != np.uint8:
        raise ValueError(f"expected an H x W x 3 uint8 RGB array, got shape {arr.shape} dtype {arr.dtype}")
    return np.ascontiguousarray(arr)


def _to_pil(image: ImageLike) -> Image.Image:
    if isinstance(image, Image.Image):
        return image.convert("RGB") if image.mode != "RGB" else image
    return Image.fromarray(to_rgb_array(image))


def normalize(images: np.ndarray) -> torch.Tensor:
    """uint8 RGB [..., H, W, 3] -> float32 [..., 3, H, W] normalized with the ImageNet mean/std."""
    # Move channels first while still uint8 (a quarter of the bytes), then normalize in place:
    # several times faster than broadcasting over a channels-last float tensor.
    chw = np.ascontiguousarray(np.moveaxis(np.asarray(images), -1, -3))
    t = torch.from_numpy(chw).to(torch.float32)
    mean = torch.tensor(IMAGENET_MEAN, dtype=torch.float32).view(3, 1, 1)
    std = torch.tensor(IMAGENET_STD, dtype=torch.float32).view(3, 1, 1)
    return t.sub_(mean).div_(std)


class TestTransform:
    """Test-time transform: keep-ratio resize to fit ``resolution`` (H, W), then normalize.

    With ``keep_ratio`` (mmseg ``Resize(keep_ratio=True)``) the (H, W) resolution is read as
    (long, short) limits, so the default (480, 853) maps a 16:9 frame of any size to 480x853.
    Without it the image is resized to exactly (H, W). ``size_divisor`` then rounds both sides
    up to a multiple by *resizing* (CFFM/MRCFA ``AlignedResize``: 480x853 -> 480x864). Unlike
    CFFM, which resizes twice (keep-ratio, then align), the image is resized once from its
    original size to the final one; the output size is the same.
    """

    __test__ = False  # not a pytest test class despite its name

    def __init__(
        self,
        resolution: tuple[int, int] = (480, 853),
        keep_ratio: bool = True,
        size_divisor: int | None = None,
    ) -> None:
        if len(resolution) != 2 or min(resolution) <= 0:
            raise ValueError(f"resolution must be two positive sides (H, W), got {resolution}")
        if size_divisor is not None and size_divisor < 1:
            raise ValueError(f"size_divisor must be >= 1, got {size_divisor}")
        self.resolution = (int(resolution[0]), int(resolution[1]))
        self.keep_ratio = keep_ratio
        self.size_divisor = size_divisor

    def output_size(self, h: int, w: int) -> tuple[int, int]:
        """(h, w) of the network input for an original frame of h x w pixels."""
        if self.keep_ratio:
            out_h, out_w = keep_ratio_size(h, w, self.resolution)
        else:
            out_h, out_w = self.resolution
        if self.size_divisor:
            out_h, out_w = _round_up(out_h, self.size_divisor), _round_up(out_w, self.size_divisor)
        return out_h, out_w

    def __call__(self, image: ImageLike) -> torch.Tensor:
        """Resize and normalize one RGB frame -> float32 [1, 3, h, w] (h, w from :meth:`output_size`)."""
        pil = _to_pil(image)
        out_h, out_w = self.output_size(pil.height, pil.width)
        if (out_h, out_w) != (pil.height, pil.width):
            pil = pil.resize((out_w, out_h), Image.BILINEAR)
        return normalize(np.asarray(pil))[None]

    def __repr__(self) -> str:
        return (
            f"TestTransform(resolution={self.resolution}, keep_ratio={self.keep_ratio}, "
            f"size_divisor={self.size_divisor})"
        )


# --------------------------------------------------------------------------------------------
# Photometric distortion (mmseg PhotoMetricDistortion, on uint8 images and OpenCV's uint8 HSV:
# H in 0..179 (degrees / 2), S and V in 0..255).


def rgb_to_hsv_u8(rgb: np.ndarray) -> np.ndarray:
    """uint8 RGB [..., 3] -> uint8 HSV [..., 3] in OpenCV's 8-bit convention (H = degrees / 2)."""
    x = rgb.astype(np.float32)
    r, g, b = x[..., 0], x[..., 1], x[..., 2]
    v = np.maximum(np.maximum(r, g), b)
    delta = v - np.minimum(np.minimum(r, g), b)
    s = 255.0 * delta / np.maximum(v, 1.0)  # v == 0 implies delta == 0, so s == 0 there
    safe = np.maximum(delta, 1e-6)
    h = np.where(v == r, (g - b) / safe, np.where(v == g, 2.0 + (b - r) / safe, 4.0 + (r - g) / safe))
    h = np.where(delta > 0, h, 0.0) * 30.0  # sixths of the circle -> OpenCV's degrees / 2
    h8 = np.mod(np.rint(h), 180.0)
    out = np.empty(x.shape, dtype=np.uint8)
    out[..., 0] = h8
    out[..., 1] = np.rint(s)
    out[..., 2] = v
    return out


def hsv_to_rgb_u8(hsv: np.ndarray) -> np.ndarray:
    """Inverse of :func:`rgb_to_hsv_u8`: uint8 HSV (H in 0..179) -> uint8 RGB."""
    x = hsv.astype(np.float32)
    h6 = x[..., 0] / 30.0  # position on the colour circle in sixths, 0..6
    v = x[..., 2]
    c = v * x[..., 1] / 255.0
    out = np.empty(x.shape, dtype=np.uint8)
    # Closed form per channel: f(n) = v - c * clip(min(k, 4 - k), 0, 1), k = (n + h6) mod 6.
    for channel, n in enumerate((5.0, 3.0, 1.0)):
        k = np.mod(n + h6, 6.0)
        out[..., channel] = np.clip(np.rint(v - c * np.clip(np.minimum(k, 4.0 - k), 0.0, 1.0)), 0, 255)
    return out


def _affine_u8(img: np.ndarray, alpha: float = 1.0, beta: float = 0.0) -> np.ndarray:
    # mmseg clips and truncates back to uint8 after every step; keep that quantization.
    return np.clip(img.astype(np.float32) * alpha + beta, 0, 255).astype(np.uint8)


@dataclass(frozen=True)
class PhotometricParams:
    """One draw of mmseg PhotoMetricDistortion; ``None`` means that step is skipped."""

    brightness: float | None
    contrast_first: bool
    contrast: float | None
    saturation: float | None
    hue: int | None

    @staticmethod
    def sample(
        rng: np.random.Generator,
        brightness_delta: int = 32,
        contrast_range: tuple[float, float] = (0.5, 1.5),
        saturation_range: tuple[float, float] = (0.5, 1.5),
        hue_delta: int = 18,
    ) -> PhotometricParams:
        """Draw every step with probability 0.5 in mmseg's order (hue delta in [-18, 17] as there)."""
        brightness = float(rng.uniform(-brightness_delta, brightness_delta)) if rng.integers(2) else None
        contrast_first = bool(rng.integers(2))
        contrast = None
        if contrast_first and rng.integers(2):
            contrast = float(rng.uniform(*contrast_range))
        saturation = float(rng.uniform(*saturation_range)) if rng.integers(2) else None
        hue = int(rng.integers(-hue_delta, hue_delta)) if rng.integers(2) else None
        if not contrast_first and rng.integers(2):
            contrast = float(rng.uniform(*contrast_range))
        return PhotometricParams(brightness, contrast_first, contrast, saturation, hue)

    def apply(self, img: np.ndarray) -> np.ndarray:
        """Distort a uint8 RGB image [H, W, 3] (brightness, contrast, saturation, hue, contrast)."""
        if self.brightness is not None:
            img = _affine_u8(img, beta=self.brightness)
        if self.contrast_first and self.contrast is not None:
            img = _affine_u8(img, alpha=self.contrast)
        if self.saturation is not None:
            hsv = rgb_to_hsv_u8(img)
            hsv[..., 1] = _affine_u8(hsv[..., 1], alpha=self.saturation)
            img = hsv_to_rgb_u8(hsv)
        if self.hue is not None:
            hsv = rgb_to_hsv_u8(img)
            hsv[..., 0] = (hsv[..., 0].astype(np.int64) + self.hue) % 180
            img = hsv_to_rgb_u8(hsv)
        if not self.contrast_first and self.contrast is not None:
            img = _affine_u8(img, alpha=self.contrast)
        return img


# --------------------------------------------------------------------------------------------
# Training augmentation for clips.


@dataclass(frozen=True)
class ClipAugmentParams:
    """The random draw shared by all frames of one clip (sizes in pixels, offsets top-left)."""

    resized: tuple[int, int]  # (h, w) after the random keep-ratio resize
    crop_top: int
    crop_left: int
    flip: bool
    photometric: tuple[PhotometricParams, ...]  # one per frame (all equal unless per-frame)


class ClipAugment:
    """Training augmentation with the same random parameters for every frame of a clip.

    The SegFormer/CFFM VSPW pipeline, in order: random keep-ratio resize of ``scale`` (W, H)
    times a ratio drawn uniformly from ``ratio_range``; random crop of ``crop`` (H, W) where
    the crop is redrawn up to 10 times while one class covers ``cat_max_ratio`` or more of the
    crop's labelled (non-ignore) pixels of the *last* frame (the clip's target, as CFFM does);
    horizontal flip with ``flip_prob``; mmseg photometric distortion; ImageNet normalization;
    bottom/right padding to the crop size (image 0, label ``ignore_index``).

    CFFM's ``PhotoMetricDistortion_clips`` draws new photometric parameters for every frame;
    the default here shares them across the clip (``per_frame_photometric=True`` restores
    CFFM's behaviour). Randomness comes from ``generator`` (or ``np.random.default_rng(seed)``)
    unless a per-call ``rng`` is given.
    """

    def __init__(
        self,
        scale: tuple[int, int] = (853, 480),
        ratio_range: tuple[float, float] | None = (0.5, 2.0),
        crop: tuple[int, int] | None = (480, 480),
        cat_max_ratio: float = 0.75,
        flip_prob: float = 0.5,
        photometric: bool = True,
        ignore_index: int = IGNORE_INDEX,
        seed: int | None = None,
        generator: np.random.Generator | None = None,
        per_frame_photometric: bool = False,
    ) -> None:
        if ratio_range is not None and not 0 < ratio_range[0] <= ratio_range[1]:
            raise ValueError(f"ratio_range must be 0 < low <= high, got {ratio_range}")
        if crop is not None and min(crop) <= 0:
            raise ValueError(f"crop must be two positive sides (H, W), got {crop}")
        if not 0.0 <= flip_prob <= 1.0:
            raise ValueError(f"flip_prob must be in [0, 1], got {flip_prob}")
        self.scale = (int(scale[0]), int(scale[1]))
        self.ratio_range = ratio_range
        self.crop = crop
        self.cat_max_ratio = cat_max_ratio
        self.flip_prob = flip_prob
        self.photometric = photometric
        self.ignore_index = ignore_index
        self.per_frame_photometric = per_frame_photometric
        self.generator = generator if generator is not None else np.random.default_rng(seed)

    def _crop_box(self, h: int, w: int, rng: np.random.Generator) -> tuple[int, int]:
        assert self.crop is not None
        top = int(rng.integers(0, max(h - self.crop[0], 0) + 1))
        left = int(rng.integers(0, max(w - self.crop[1], 0) + 1))
        return top, left

    def _choose_crop(self, label: np.ndarray, rng: np.random.Generator) -> tuple[int, int]:
        h, w = label.shape
        top, left = self._crop_box(h, w, rng)
        if self.cat_max_ratio >= 1.0:
            return top, left
        ch, cw = self.crop  # type: ignore[misc]
        for _ in range(10):
            window = label[top : top + ch, left : left + cw]
            counts = np.bincount(window.ravel(), minlength=256)
            counts[self.ignore_index] = 0
            counts = counts[counts > 0]
            if len(counts) > 1 and counts.max() / counts.sum() < self.cat_max_ratio:
                break
            top, left = self._crop_box(h, w, rng)
        return top, left

    def __call__(
        self,
        images: Sequence[ImageLike],
        labels: Sequence[np.ndarray],
        rng: np.random.Generator | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Augment a clip: T RGB frames and T label maps (uint8 evaluation space, 255 ignored).

        Returns images float32 [T, 3, h, w] and labels int64 [T, h, w]; (h, w) is the crop size
        (or the resized size when ``crop`` is None).
        """
        return self.apply(images, labels, rng)[:2]

    def apply(
        self,
        images: Sequence[ImageLike],
        labels: Sequence[np.ndarray],
        rng: np.random.Generator | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor, ClipAugmentParams]:
        """Like ``__call__`` but also returns the random parameters that were drawn."""
        rng = self.generator if rng is None else rng
        if len(images) == 0 or len(images) != len(labels):
            raise ValueError(f"need as many labels as images (>= 1), got {len(images)} and {len(labels)}")
        pils = [_to_pil(im) for im in images]
        h, w = pils[0].height, pils[0].width
        for i, (im, lab) in enumerate(zip(pils, labels)):
            if (im.height, im.width) != (h, w) or np.shape(lab) != (h, w):
                raise ValueError(
                    f"frame {i}: image {im.height}x{im.width} / label {np.shape(lab)} "
                    f"differ from frame 0 ({h}x{w})"
                )

        if self.ratio_range is not None:
            lo, hi = self.ratio_range
            ratio = rng.random() * (hi - lo) + lo
            target = (int(self.scale[0] * ratio), int(self.scale[1] * ratio))
        else:
            target = self.scale
        new_h, new_w = keep_ratio_size(h, w, target)
        if (new_h, new_w) != (h, w):
            pils = [im.resize((new_w, new_h), Image.BILINEAR) for im in pils]
            labs = [
                np.asarray(
                    Image.fromarray(np.asarray(lab, dtype=np.uint8)).resize((new_w, new_h), Image.NEAREST)
                )
                for lab in labels
            ]
        else:
            labs = [np.asarray(lab, dtype=np.uint8) for lab in labels]
        imgs = np.stack([np.asarray(im) for im in pils])  # [T, h, w, 3] uint8
        labs_arr = np.stack(labs)  # [T, h, w] uint8

        top = left = 0
        if self.crop is not None:
            top, left = self._choose_crop(labs_arr[-1], rng)
            ch, cw = self.crop
            imgs = imgs[:, top : top + ch, left : left + cw]
            labs_arr = labs_arr[:, top : top + ch, left : left + cw]

        flip = bool(rng.random() < self.flip_prob)
        if flip:
            imgs = imgs[:, :, ::-1]
            labs_arr = labs_arr[:, :, ::-1]

        params: tuple[PhotometricParams, ...] = ()
        if self.photometric:
            if self.per_frame_photometric:
                params = tuple(PhotometricParams.sample(rng) for _ in range(len(imgs)))
            else:
                params = (PhotometricParams.sample(rng),) * len(imgs)
            imgs = np.stack([p.apply(np.ascontiguousarray(im)) for p, im in zip(params, imgs)])

        out_images = normalize(imgs)
        out_labels = torch.from_numpy(np.ascontiguousarray(labs_arr)).to(torch.int64)
        if self.crop is not None:
            pad_h = self.crop[0] - out_images.shape[-2]
            pad_w = self.crop[1] - out_images.shape[-1]
            if pad_h > 0 or pad_w > 0:
                out_images = torch.nn.functional.pad(out_images, (0, pad_w, 0, pad_h), value=0.0)
                out_labels = torch.nn.functional.pad(
                    out_labels, (0, pad_w, 0, pad_h), value=self.ignore_index
                )
        info = ClipAugmentParams((new_h, new_w), top, left, flip, params)
        return out_images, out_labels, info

    def __repr__(self) -> str:
        return (
            f"ClipAugment(scale={self.scale}, ratio_range={self.ratio_range}, crop={self.crop}, "
            f"cat_max_ratio={self.cat_max_ratio}, flip_prob={self.flip_prob}, "
            f"photometric={self.photometric}, per_frame_photometric={self.per_frame_photometric})"
        )
