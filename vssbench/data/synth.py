"""Synthetic VSPW-mini: small videos in the exact VSPW layout, with real temporal structure.

Each video shows a scene of 2-3 textured background bands (e.g. sky / building / road) with
wavy borders, seen by a panning camera (the background scrolls with the camera), and several
moving objects of distinct classes (ellipses and rectangles, rotating and breathing slightly)
that occlude each other in a fixed depth order; one enters the frame and one leaves it. Every
class has its own colours and texture, fixed across videos and seeds, so a model can learn
them. As in real VSPW masks there is an "others" (raw 0) object, void (raw 255) pixels in a
thin border around every object and in a few blobs, and label noise: a few boundary pixels per
frame take their neighbour's label.

Splits: ``val`` gets the first ``max(1, videos // 2)`` videos, ``test`` the next one when
``videos >= 3``, ``train`` the rest (6 videos -> 3 val, 1 test, 2 train).

Output is deterministic for a seed (byte-identical files) and written atomically: the tree is
built in a temporary folder beside ``out`` and renamed into place, so nobody ever sees a
half-written dataset.
"""

from __future__ import annotations

from collections.abc import Iterator

import errno
import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from vssbench.data.labels import RAW_OTHERS, RAW_PALETTE, RAW_VOID
from vssbench.errors import DataError

SYNTH_VERSION = 1
DEFAULT_NAME = f"synthetic-vspw-mini-v{SYNTH_VERSION}"
DEFAULT_PARAMS = {"videos": 6, "frames": 20, "size": (180, 320), "seed": 0}
#: Written last into a finished tree; its presence tells a complete dataset from a partial one.
MARKER = ".vssbench-synthetic.json"
JPEG_QUALITY = 90

# Raw class values (see labels.CLASS_NAMES[value - 1]) drawn in the scenes.
_TOP_BANDS = (29, 2)  # sky, ceiling
_MIDDLE_BANDS = (1, 22, 30, 67)  # wall, building, mountain, tree
_BOTTOM_BANDS = (14, 19, 16, 17, 36)  # floor, road, grass, sand, sea
_OBJECTS = (61, 49, 63, 62, 52, 75, 50, 64, 55, 77, 91, 85)  # person, car, dog, cat, bicycle, ...


@dataclass(frozen=True)
class _Look:
    """How a class is painted: two colours blended by a texture pattern."""

    base: tuple[float, float, float]
    alt: tuple[float, float, float]
    pattern: str  # stripes | checker | dots | noise
    period: float  # pixels
    angle: float  # radians, orientation of stripes
    mix: float  # how much of ``alt`` the pattern brings in, 0..1


_LOOKS: dict[int, _Look] = {
    RAW_OTHERS: _Look((200, 60, 200), (90, 20, 90), "noise", 4.0, 0.0, 0.7),
    29: _Look((120, 170, 235), (235, 240, 250), "noise", 24.0, 0.0, 0.35),  # sky
    2: _Look((225, 222, 210), (190, 185, 170), "checker", 22.0, 0.0, 0.5),  # ceiling
    1: _Look((205, 190, 160), (170, 150, 120), "stripes", 14.0, 1.5708, 0.5),  # wall
    22: _Look((150, 110, 100), (90, 70, 65), "checker", 10.0, 0.0, 0.6),  # building
    30: _Look((110, 115, 125), (70, 80, 70), "noise", 10.0, 0.0, 0.6),  # mountain
    67: _Look((40, 120, 45), (20, 70, 25), "dots", 7.0, 0.0, 0.7),  # tree
    14: _Look((170, 135, 95), (120, 90, 60), "stripes", 9.0, 0.0, 0.5),  # floor
    19: _Look((80, 80, 85), (150, 150, 150), "stripes", 30.0, 0.3, 0.3),  # road
    16: _Look((70, 160, 60), (110, 200, 80), "noise", 3.0, 0.0, 0.5),  # grass
    17: _Look((220, 200, 140), (190, 165, 110), "dots", 5.0, 0.0, 0.4),  # sand
    36: _Look((30, 90, 160), (80, 150, 210), "stripes", 6.0, 0.15, 0.5),  # sea
    61: _Look((230, 170, 140), (60, 40, 120), "stripes", 6.0, 0.0, 0.6),  # person
    49: _Look((200, 30, 30), (250, 230, 230), "checker", 8.0, 0.0, 0.3),  # car
    63: _Look((140, 90, 40), (90, 55, 25), "noise", 3.0, 0.0, 0.6),  # dog
    62: _Look((100, 100, 100), (230, 230, 230), "stripes", 5.0, 0.8, 0.7),  # cat
    52: _Look((20, 20, 20), (240, 200, 0), "checker", 4.0, 0.0, 0.5),  # bicycle
    75: _Look((250, 250, 250), (10, 10, 10), "dots", 9.0, 0.0, 0.8),  # ball
    50: _Look((250, 200, 20), (40, 40, 40), "stripes", 12.0, 0.0, 0.4),  # bus
    64: _Look((90, 50, 20), (240, 240, 240), "dots", 11.0, 0.0, 0.3),  # horse
    55: _Look((245, 245, 245), (0, 60, 150), "stripes", 7.0, 1.5708, 0.6),  # ship_or_boat
    77: _Look((190, 150, 90), (120, 90, 40), "checker", 16.0, 0.0, 0.4),  # box
    91: _Look((150, 40, 120), (70, 20, 60), "stripes", 4.0, 0.7, 0.6),  # chair_or_seat
    85: _Look((40, 200, 200), (200, 255, 255), "dots", 4.0, 0.0, 0.6),  # bottle_or_cup
}


def _class_noise_tile(raw: int) -> np.ndarray:
    # A fixed 64x64 random tile per class: the class's "noise" texture is the same everywhere.
    return np.random.default_rng([7919, raw]).random((64, 64), dtype=np.float32)


_NOISE_TILES: dict[int, np.ndarray] = {raw: _class_noise_tile(raw) for raw in _LOOKS}


def _paint(raw: int, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Colours [N, 3] of class ``raw`` at texture coordinates (u, v) (pixels, object or world frame)."""
    look = _LOOKS[raw]
    p = look.period
    if look.pattern == "stripes":
        t = u * np.cos(look.angle) + v * np.sin(look.angle)
        m = 0.5 + 0.5 * np.sin(2 * np.pi * t / p)
    elif look.pattern == "checker":
        m = ((np.floor(u / p) + np.floor(v / p)) % 2).astype(np.float32)
    elif look.pattern == "dots":
        m = (np.sin(2 * np.pi * u / p) * np.sin(2 * np.pi * v / p) > 0.35).astype(np.float32)
    else:
        tile = _NOISE_TILES[raw]
        iy = np.floor(v / p).astype(np.int64) % tile.shape[0]
        ix = np.floor(u / p).astype(np.int64) % tile.shape[1]
        m = tile[iy, ix]
    m = (look.mix * m).astype(np.float32)[:, None]
    base = np.asarray(look.base, dtype=np.float32)
    alt = np.asarray(look.alt, dtype=np.float32)
    return base * (1 - m) + alt * m


@dataclass(frozen=True)
class _Object:
    raw: int
    shape: str  # ellipse | rect
    a: float  # half extent along u (pixels)
    b: float  # half extent along v
    x0: float  # screen x of the centre at frame 0
    vx: float  # pixels / frame
    y0: float
    vy: float
    bob: float  # vertical oscillation amplitude
    angle0: float
    spin: float  # radians / frame
    phase: float


@dataclass(frozen=True)
class _Scene:
    bands: tuple[int, ...]  # raw classes, top to bottom
    borders: tuple[tuple[float, float, float, float], ...]  # per border: level (frac of H), amp, wavelength, phase
    pan: float  # camera speed, pixels / frame (background scrolls by -pan)
    objects: tuple[_Object, ...]  # back to front
    void_blobs: tuple[tuple[float, float, float, float, int, int], ...]  # world x, y, rx, ry, first, last frame
    flips_per_frame: int


def _make_scene(rng: np.random.Generator, frames: int, h: int, w: int) -> _Scene:
    n_bands = int(rng.integers(2, 4))
    bands = [int(rng.choice(_TOP_BANDS))]
    if n_bands == 3:
        bands.append(int(rng.choice(_MIDDLE_BANDS)))
    bands.append(int(rng.choice(_BOTTOM_BANDS)))
    levels = np.sort(rng.uniform(0.25, 0.75, size=n_bands - 1)) if n_bands == 3 else [rng.uniform(0.35, 0.6)]
    borders = tuple(
        (
            float(level),
            float(rng.uniform(0.02, 0.08) * h),
            float(rng.uniform(0.4, 1.2) * w),
            float(rng.uniform(0, 2 * np.pi)),
        )
        for level in levels
    )
    scale = w / 320.0
    pan = float(rng.uniform(1.0, 4.0) * scale * rng.choice([-1.0, 1.0]))

    n_obj = int(rng.integers(3, 6))
    classes = [int(c) for c in rng.choice(_OBJECTS, size=n_obj - 1, replace=False)]
    classes.insert(int(rng.integers(0, n_obj)), RAW_OTHERS)  # one "others" object at a random depth
    span = max(frames - 1, 1)
    objects = []
    for i, raw in enumerate(classes):
        a = float(rng.uniform(0.06, 0.16) * w)
        b = float(rng.uniform(0.08, 0.25) * h)
        speed = float(rng.uniform(0.3, 1.0) * w / span)
        direction = float(rng.choice([-1.0, 1.0]))
        if i == 0:  # enters: crosses the edge it comes from at ~30% of the video
            vx = speed * direction
            edge = -a if vx > 0 else w + a
            x0 = edge - vx * 0.3 * span
        elif i == 1:  # leaves: crosses the edge ahead of it at ~70% of the video
            vx = speed * direction
            edge = w + a if vx > 0 else -a
            x0 = edge - vx * 0.7 * span
        else:
            vx = speed * direction * 0.5
            x0 = float(rng.uniform(0.1, 0.9) * w)
        objects.append(
            _Object(
                raw=raw,
                shape=str(rng.choice(["ellipse", "rect"])),
                a=a,
                b=b,
                x0=float(x0),
                vx=float(vx),
                y0=float(rng.uniform(0.3, 0.8) * h),
                vy=float(rng.uniform(-0.3, 0.3) * h / span),
                bob=float(rng.uniform(0, 0.04) * h),
                angle0=float(rng.uniform(-0.4, 0.4)),
                spin=float(rng.uniform(-0.03, 0.03)),
                phase=float(rng.uniform(0, 2 * np.pi)),
            )
        )
    order = rng.permutation(len(objects))  # depth order: the first is painted first (farthest)
    n_blobs = int(rng.integers(1, 3))
    void_blobs = []
    for _ in range(n_blobs):
        first = int(rng.integers(0, max(frames - 1, 1)))
        last = int(min(frames - 1, first + rng.integers(frames // 4 + 1, frames + 1)))
        void_blobs.append(
            (
                float(rng.uniform(0.1, 0.9) * w),
                float(rng.uniform(0.1, 0.9) * h),
                float(rng.uniform(0.02, 0.06) * w),
                float(rng.uniform(0.03, 0.08) * h),
                first,
                last,
            )
        )
    return _Scene(
        bands=tuple(bands),
        borders=borders,
        pan=pan,
        objects=tuple(objects[i] for i in order),
        void_blobs=tuple(void_blobs),
        flips_per_frame=max(4, (h * w) // 2000),
    )


def _render_frame(scene: _Scene, t: int, h: int, w: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """RGB uint8 [H, W, 3] and raw label uint8 [H, W] of frame ``t``."""
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    offset = float(np.round(scene.pan * t))  # integer pan: labels scroll exactly with the texture
    xw = xx + offset

    # Background bands: the band index of a pixel is how many borders lie above it.
    band = np.zeros((h, w), dtype=np.int64)
    for level, amp, wavelength, phase in scene.borders:
        border = level * h + amp * np.sin(2 * np.pi * xw[0] / wavelength + phase)
        band += yy >= border[None, :]
    label = np.asarray(scene.bands, dtype=np.uint8)[band]
    colour = np.empty((h, w, 3), dtype=np.float32)
    for i, raw in enumerate(scene.bands):
        sel = band == i
        colour[sel] = _paint(raw, xw[sel], yy[sel])
    # Soft vertical light falloff makes the background a little less synthetic.
    colour *= (1.05 - 0.15 * yy / h)[..., None]

    void = np.zeros((h, w), dtype=bool)
    border_px = 1.5
    for obj in scene.objects:
        cx = obj.x0 + obj.vx * t
        cy = obj.y0 + obj.vy * t + obj.bob * np.sin(0.5 * t + obj.phase)
        breathe = 1.0 + 0.08 * np.sin(0.3 * t + obj.phase)
        a, b = obj.a * breathe, obj.b * breathe
        ang = obj.angle0 + obj.spin * t
        reach = np.hypot(a, b) + 3.0
        if cx + reach < 0 or cx - reach >= w or cy + reach < 0 or cy - reach >= h:
            continue  # fully outside the frame
        # Work in the object's bounding box only.
        y0, y1 = max(int(cy - reach), 0), min(int(cy + reach) + 1, h)
        x0, x1 = max(int(cx - reach), 0), min(int(cx + reach) + 1, w)
        dx, dy = xx[y0:y1, x0:x1] - cx, yy[y0:y1, x0:x1] - cy
        u = dx * np.cos(ang) + dy * np.sin(ang)
        v = -dx * np.sin(ang) + dy * np.cos(ang)
        if obj.shape == "ellipse":
            r = np.sqrt((u / a) ** 2 + (v / b) ** 2)
            inside = r <= 1.0
            ring = ~inside & (r <= 1.0 + border_px / min(a, b))
            shade = 1.0 - 0.3 * np.clip(r, 0, 1) ** 2
        else:
            inside = (np.abs(u) <= a) & (np.abs(v) <= b)
            ring = ~inside & (np.abs(u) <= a + border_px) & (np.abs(v) <= b + border_px)
            shade = 1.0 - 0.15 * np.clip(np.maximum(np.abs(u) / a, np.abs(v) / b), 0, 1)
        box_label = label[y0:y1, x0:x1]
        box_colour = colour[y0:y1, x0:x1]
        box_void = void[y0:y1, x0:x1]
        box_label[inside] = obj.raw
        box_colour[inside] = _paint(obj.raw, u[inside], v[inside]) * shade[inside][:, None]
        box_void[inside] = False  # a nearer object hides the void border of a farther one
        box_void[ring] = True

    for bx, by, rx, ry, first, last in scene.void_blobs:
        if first <= t <= last:
            # Blobs sit still in the world: unlabelled patches scroll with the background.
            void |= ((xw - bx) / rx) ** 2 + ((yy - by) / ry) ** 2 <= 1.0

    # Label noise: a few pixels on horizontal label boundaries take their left neighbour's label.
    edges = np.flatnonzero((label[:, 1:] != label[:, :-1]).ravel())
    if edges.size:
        pick = rng.choice(edges, size=min(scene.flips_per_frame, edges.size), replace=False)
        rows, cols = np.divmod(pick, w - 1)
        label[rows, cols + 1] = label[rows, cols]

    raw = np.where(void, np.uint8(RAW_VOID), label).astype(np.uint8)
    colour += rng.normal(0.0, 3.0, size=colour.shape).astype(np.float32)  # sensor noise
    image = np.clip(np.rint(colour), 0, 255).astype(np.uint8)
    return image, raw


def render_video(
    frames: int, size: tuple[int, int] = (180, 320), seed: int = 0
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Render one synthetic video in memory, frame by frame: (RGB uint8 [H, W, 3], raw label uint8 [H, W]).

    Scenes of the kind :func:`synthesize` writes (moving, occluding objects, camera pan; raw labels
    0..124 and 255), without touching the disk: what ``vssbench profile`` feeds content-dependent
    methods so that their non-keyframe cost is that of a real-looking video.
    """
    h, w = _check_params(1, frames, size)
    rng = np.random.default_rng([seed, 0])
    scene = _make_scene(rng, frames, h, w)
    for t in range(frames):
        yield _render_frame(scene, t, h, w, rng)


def _split_videos(ids: list[str]) -> dict[str, list[str]]:
    n_val = max(1, len(ids) // 2)
    n_test = 1 if len(ids) >= 3 else 0
    return {
        "train": ids[n_val + n_test :],
        "val": ids[:n_val],
        "test": ids[n_val : n_val + n_test],
    }


def _write_tree(tmp: Path, videos: int, frames: int, size: tuple[int, int], seed: int) -> dict[str, object]:
    h, w = size
    ids = [f"{v + 1:04d}_synth{v + 1:04d}" for v in range(videos)]
    palette = RAW_PALETTE.tobytes()
    for v, vid in enumerate(ids):
        rng = np.random.default_rng([seed, v])
        scene = _make_scene(rng, frames, h, w)
        start = int(rng.integers(1, 5000))  # real VSPW clips rarely start at frame 00000001
        origin = tmp / "data" / vid / "origin"
        mask = tmp / "data" / vid / "mask"
        origin.mkdir(parents=True)
        mask.mkdir(parents=True)
        for t in range(frames):
            image, raw = _render_frame(scene, t, h, w, rng)
            stem = f"{start + t:08d}"
            Image.fromarray(image).save(origin / f"{stem}.jpg", format="JPEG", quality=JPEG_QUALITY)
            png = Image.fromarray(raw)
            png.putpalette(palette)  # 'L' -> 'P' keeping the raw values as indices
            png.save(mask / f"{stem}.png", format="PNG")
    splits = _split_videos(ids)
    for name, members in splits.items():
        (tmp / f"{name}.txt").write_text("".join(f"{m}\n" for m in members), encoding="utf-8")
    return {
        "generator": "vssbench.data.synth",
        "version": SYNTH_VERSION,
        "videos": videos,
        "frames": frames,
        "size": [h, w],
        "seed": seed,
        "splits": {k: len(m) for k, m in splits.items()},
    }


def _check_params(videos: int, frames: int, size: tuple[int, int]) -> tuple[int, int]:
    if videos < 1:
        raise ValueError(f"videos must be >= 1, got {videos}")
    if frames < 1:
        raise ValueError(f"frames must be >= 1, got {frames}")
    if len(size) != 2 or min(size) < 16:
        raise ValueError(f"size must be (H, W) with both sides >= 16, got {size}")
    return int(size[0]), int(size[1])


def _build(out: Path, videos: int, frames: int, size: tuple[int, int], seed: int) -> Path:
    """Build the tree in a temporary sibling of ``out``, marker last; returns the temporary path."""
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-", dir=out.parent))
    try:
        meta = _write_tree(tmp, videos, frames, size, seed)
        (tmp / MARKER).write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n", encoding="utf-8")
        os.chmod(tmp, 0o755)  # mkdtemp makes it private; the dataset itself is not
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return tmp


def _is_occupied(exc: OSError) -> bool:
    return exc.errno in (errno.ENOTEMPTY, errno.EEXIST, errno.ENOTDIR)


def synthesize(
    out: str | os.PathLike[str],
    videos: int = 6,
    frames: int = 20,
    size: tuple[int, int] = (180, 320),
    seed: int = 0,
) -> Path:
    """Write a synthetic VSPW-mini of ``videos`` x ``frames`` frames of ``size`` (H, W) to ``out``.

    Returns ``out``. Raises DataError if ``out`` already exists and is not an empty folder (an
    existing dataset is never overwritten). See the module docstring for content and splits.
    """
    h, w = _check_params(videos, frames, size)
    out = Path(out)
    if out.exists() and not (out.is_dir() and not any(out.iterdir())):
        raise DataError(out, "already exists and is not empty; choose another --out or remove it")
    tmp = _build(out, videos, frames, (h, w), seed)
    try:
        os.replace(tmp, out)  # atomic; replaces only a missing or empty folder
    except OSError as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        if _is_occupied(exc):
            raise DataError(out, "was created by someone else while generating; not overwritten") from exc
        raise
    return out


def cache_dir() -> Path:
    """vssbench's cache folder: ``$VSSBENCH_CACHE``, else ``${XDG_CACHE_HOME:-~/.cache}/vssbench``."""
    env = os.environ.get("VSSBENCH_CACHE")
    if env:
        return Path(env).expanduser()
    return Path(os.environ.get("XDG_CACHE_HOME") or "~/.cache").expanduser() / "vssbench"


def read_marker(root: str | os.PathLike[str]) -> dict[str, object] | None:
    """The generator parameters of a finished synthetic tree, or None when it is absent or partial."""
    try:
        meta = json.loads((Path(root) / MARKER).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return meta if isinstance(meta, dict) else None


def _default_is_complete(root: Path) -> bool:
    meta = read_marker(root)
    if meta is None:
        return False
    expected = dict(DEFAULT_PARAMS, size=list(DEFAULT_PARAMS["size"]), version=SYNTH_VERSION)  # type: ignore[arg-type]
    return all(meta.get(k) == v for k, v in expected.items())


def default_dataset() -> Path:
    """The embedded synthetic VSPW-mini (6 videos: 3 val, 1 test, 2 train; 20 frames of 180x320; seed 0).

    Generated once into ``cache_dir() / "synthetic-vspw-mini-v1"`` and reused; safe when several
    processes ask for it at the same time (each builds privately, the first rename wins).
    """
    root = cache_dir() / DEFAULT_NAME
    if _default_is_complete(root):
        return root
    p = DEFAULT_PARAMS
    tmp = _build(root, p["videos"], p["frames"], p["size"], p["seed"])  # type: ignore[arg-type]
    for _ in range(3):
        try:
            os.replace(tmp, root)
            return root
        except OSError as exc:
            if not _is_occupied(exc):
                shutil.rmtree(tmp, ignore_errors=True)
                raise
        if _default_is_complete(root):  # another process finished first
            shutil.rmtree(tmp, ignore_errors=True)
            return root
        # A leftover without the marker (or of another version) in our own cache slot: move it
        # aside atomically, then delete it, and try again.
        stale = Path(tempfile.mkdtemp(prefix=f".{root.name}.stale-", dir=root.parent))
        try:
            os.replace(root, stale / "old")
        except FileNotFoundError:
            pass
        shutil.rmtree(stale, ignore_errors=True)
    shutil.rmtree(tmp, ignore_errors=True)
    raise DataError(root, "could not install the synthetic dataset in the cache (keeps changing under us)")
