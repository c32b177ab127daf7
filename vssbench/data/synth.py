"""Synthetic VSPW-mini: small videos in the exact VSPW layout, with real temporal structure.

Each video shows a scene of 2-3 textured background bands (e.g. sky / building / road) with
wavy borders, seen by a panning camera (the background scrolls with the camera), and several
moving objects of distinct classes (ellipses and rectangles, rotating and breathing slightly)
that occlude each other in a fixed depth order; one enters the frame and one leaves it. Every
class has its own colours and texture, fixed across videos and seeds, so a model can learn
them. As in real VSPW masks there is an "others" (raw 0) object, void (raw 255) pixels in a
thin border around every object and in a few blobs, and label noise: a few boundary pixels per
frame take their neighbour's label.

Splits: ``val`` gets the first ``max(1, videos // 2)`` videos (or ``val_videos``), ``test`` the
next one when ``videos >= 3`` and at least two remain, ``train`` the rest (6 videos -> 3 val,
1 test, 2 train; the study's 36 with ``val_videos=6`` -> 6 val, 1 test, 29 train).
``more_val_videos=K`` renders K further videos after those (ids and seeds continuing the
numbering) and appends them to ``val``: train and test, and every other video's files, stay
byte-identical to the dataset without them.

Output is deterministic for a seed (byte-identical files) and written atomically: the tree is
built in a temporary folder beside ``out`` and renamed into place, so nobody ever sees a
half-written dataset.

Difficulty (:class:`Difficulty`, presets in :data:`PRESETS`): ``easy`` is the scene above, byte
for byte. Harder settings add what makes per-frame models flicker on real video: per-frame
sensor noise, JPEG artifacts (quality varying per frame), illumination and white-balance
flicker, motion blur, camera shake, fast motion (objects bounce inside the frame), more and
smaller objects (occlusion), look-alike classes (paired classes whose colours converge so only
their texture tells them apart) and thin world-fixed poles. Photometric knobs never touch the
masks. Every random draw of a knob comes from its own stream (``[seed, video, 1]``), so the
scene geometry of a seed is the same at every difficulty and ``easy`` consumes exactly the
draws it always did. ``study`` is the setting the synthetic study trains and evaluates on
(:func:`write_dataset`; calibration in ``benchmarks/results/synth_calibration.csv``).
"""

from __future__ import annotations

import dataclasses
import errno
import functools
import json
import math
import os
import shutil
import tempfile
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from vssbench.data.labels import RAW_OTHERS, RAW_PALETTE, RAW_VOID
from vssbench.errors import DataError, OptionError

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
_POLE = 13  # raw class of the thin structures
#: Look-alike partners (``Difficulty.lookalike``): neighbours in each pool, so that a reduced pool
#: (``object_classes``, ``band_choices``) keeps its pairs.
_PARTNERS: dict[int, int] = {}
for _pool in (_TOP_BANDS, _MIDDLE_BANDS, _BOTTOM_BANDS, _OBJECTS):
    for _a, _b in zip(_pool[0::2], _pool[1::2]):
        _PARTNERS[_a], _PARTNERS[_b] = _b, _a


@dataclass(frozen=True)
class Difficulty:
    """What makes the synthetic videos hard for a per-frame model; the defaults are ``easy``.

    Photometric knobs (``noise``, ``jpeg_*``, ``*_flicker``, ``motion_blur``) change only the
    frames; the others change the scene and therefore the masks too.
    """

    noise: float = 3.0  # sensor noise: std of i.i.d. Gaussian noise per pixel and frame (grey levels)
    jpeg_quality: int = JPEG_QUALITY  # JPEG quality of the written frames, 1..95
    jpeg_jitter: int = 0  # per-frame quality uniform in [jpeg_quality - jpeg_jitter, jpeg_quality]
    brightness_flicker: float = 0.0  # std of log of a per-frame global gain (0.1 ~ +-10 %)
    white_balance_flicker: float = 0.0  # std of log of per-frame per-channel gains
    motion_blur: float = 0.0  # exposure as a fraction of the frame interval (0 sharp, 1 full)
    shake: float = 0.0  # camera shake: std of a per-frame random image offset (pixels, x and y)
    speed: float = 1.0  # object motion multiplier; > 1 also makes mid-frame objects bounce at the edges
    min_objects: int = 3  # objects per video, inclusive range (one is "others")
    max_objects: int = 5
    object_scale: float = 1.0  # object size multiplier
    lookalike: float = 0.0  # 0..1: paired classes' colours meet halfway at 1 (texture still differs)
    thin: int = 0  # thin world-fixed poles per video (half behind, half in front of the objects)
    object_classes: int = len(_OBJECTS)  # object classes drawn from: the first N of the pool
    band_choices: int = len(_BOTTOM_BANDS)  # background classes per band position: the first N

    def __post_init__(self) -> None:
        def bad(name: str, rule: str) -> OptionError:
            return OptionError(f"difficulty knob {name}={getattr(self, name)!r}: must be {rule}")

        for name in ("noise", "brightness_flicker", "white_balance_flicker", "motion_blur", "shake"):
            if not (math.isfinite(getattr(self, name)) and getattr(self, name) >= 0):
                raise bad(name, ">= 0")
        if not 1 <= self.jpeg_quality <= 95:
            raise bad("jpeg_quality", "in 1..95")
        if not 0 <= self.jpeg_jitter < self.jpeg_quality:
            raise bad("jpeg_jitter", f"in 0..{self.jpeg_quality - 1} (below jpeg_quality)")
        if not (math.isfinite(self.speed) and self.speed > 0):
            raise bad("speed", "> 0")
        if not (math.isfinite(self.object_scale) and 0.1 <= self.object_scale <= 3):
            raise bad("object_scale", "in 0.1..3")
        if not 2 <= self.min_objects <= self.max_objects:
            raise bad("min_objects", f"in 2..max_objects ({self.max_objects})")
        if self.max_objects > 20:
            raise bad("max_objects", "<= 20")
        if not 0.0 <= self.lookalike <= 1.0:
            raise bad("lookalike", "in 0..1")
        if not 0 <= self.thin <= 20:
            raise bad("thin", "in 0..20")
        if not 1 <= self.object_classes <= len(_OBJECTS):
            raise bad("object_classes", f"in 1..{len(_OBJECTS)}")
        if not 1 <= self.band_choices <= len(_BOTTOM_BANDS):
            raise bad("band_choices", f"in 1..{len(_BOTTOM_BANDS)}")

    def replace(self, **knobs: object) -> Difficulty:
        """A copy with ``knobs`` changed; values may be strings (``"0.5"``, as on the command line).

        Unknown knobs and values of the wrong type are an :class:`OptionError` naming the knob.
        """
        fields = {f.name: f for f in dataclasses.fields(self)}
        changes: dict[str, object] = {}
        for name, value in knobs.items():
            if name not in fields:
                raise OptionError(f"unknown difficulty knob {name!r}; knobs: {', '.join(fields)}")
            kind = int if isinstance(getattr(EASY, name), int) else float
            try:
                if kind is int and isinstance(value, float) and not value.is_integer():
                    raise ValueError
                changes[name] = kind(float(value)) if kind is int else kind(value)  # type: ignore[arg-type]
            except (TypeError, ValueError):
                raise OptionError(f"difficulty knob {name}={value!r}: expected {kind.__name__}") from None
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, float | int]:
        """The knobs as a flat dict (what the dataset's marker records)."""
        return dataclasses.asdict(self)


EASY = Difficulty()
#: Named difficulties. ``easy`` is the original generator (byte-identical output); ``medium`` and
#: ``hard`` turn every knob up; ``study`` is the calibrated setting of the synthetic study (small
#: frames, few classes): see ``benchmarks/results/synth_calibration.csv``.
PRESETS: dict[str, Difficulty] = {
    "easy": EASY,
    "medium": Difficulty(
        noise=6.0,
        jpeg_quality=60,
        jpeg_jitter=20,
        brightness_flicker=0.05,
        white_balance_flicker=0.03,
        motion_blur=0.5,
        shake=1.0,
        speed=1.5,
        min_objects=4,
        max_objects=6,
        lookalike=0.5,
        thin=2,
    ),
    "hard": Difficulty(
        noise=10.0,
        jpeg_quality=35,
        jpeg_jitter=25,
        brightness_flicker=0.1,
        white_balance_flicker=0.06,
        motion_blur=1.0,
        shake=2.5,
        speed=2.5,
        min_objects=5,
        max_objects=8,
        object_scale=0.8,
        lookalike=0.8,
        thin=4,
    ),
    "study": Difficulty(
        noise=8.0,
        jpeg_quality=50,
        jpeg_jitter=25,
        brightness_flicker=0.08,
        white_balance_flicker=0.04,
        motion_blur=0.7,
        shake=1.5,
        speed=2.0,
        min_objects=4,
        max_objects=6,
        object_scale=1.5,
        lookalike=0.35,
        thin=0,
        object_classes=4,
        band_choices=2,
    ),
}
#: Dataset shape of a preset made for a study (others use the caller's or the command's defaults).
PRESET_SHAPES: dict[str, dict[str, object]] = {
    # 29 train videos so that every val class is seen in training (12 videos left 5, without "building").
    "study": {"videos": 36, "val_videos": 6, "frames": 24, "size": (96, 160)},
}
#: ``vssbench data synth`` arguments that write the study dataset (``vssbench reproduce`` uses them).
STUDY_SYNTH_ARGS: dict[str, object] = {
    "difficulty": "study",
    "videos": PRESET_SHAPES["study"]["videos"],
    "val_videos": PRESET_SHAPES["study"]["val_videos"],
    "frames": PRESET_SHAPES["study"]["frames"],
    "size": "{}x{}".format(*PRESET_SHAPES["study"]["size"]),  # type: ignore[str-format]
    # 6 further val videos (12 in all; the 29 training videos unchanged): the size chosen on the
    # bootstrap interval's width against evaluation time (benchmarks/val_split_size.py).
    "more_val_videos": 6,
}


def resolve_difficulty(difficulty: str | Difficulty = "easy", **knobs: object) -> Difficulty:
    """The knobs of preset ``difficulty`` (or the given :class:`Difficulty`) with ``knobs`` overridden."""
    if isinstance(difficulty, Difficulty):
        base = difficulty
    elif difficulty in PRESETS:
        base = PRESETS[difficulty]
    else:
        raise OptionError(f"unknown difficulty {difficulty!r}; presets: {', '.join(PRESETS)}")
    return base.replace(**knobs) if knobs else base


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
    _POLE: _Look((70, 70, 75), (150, 150, 155), "stripes", 6.0, 1.5708, 0.4),  # pole
}


@functools.lru_cache(maxsize=16)
def _looks(lookalike: float) -> dict[int, _Look]:
    """Every class's look, each paired class's colours moved ``lookalike / 2`` of the way to its
    partner's (at 1 both meet halfway; pattern, period and mix still differ)."""
    if lookalike == 0.0:
        return _LOOKS
    k = lookalike / 2

    def towards(c: tuple[float, float, float], d: tuple[float, float, float]) -> tuple[float, float, float]:
        return tuple(float(x + k * (y - x)) for x, y in zip(c, d))  # type: ignore[return-value]

    looks = dict(_LOOKS)
    for raw, partner in _PARTNERS.items():
        own, other = _LOOKS[raw], _LOOKS[partner]
        looks[raw] = dataclasses.replace(
            own, base=towards(own.base, other.base), alt=towards(own.alt, other.alt)
        )
    return looks


def _class_noise_tile(raw: int) -> np.ndarray:
    # A fixed 64x64 random tile per class: the class's "noise" texture is the same everywhere.
    return np.random.default_rng([7919, raw]).random((64, 64), dtype=np.float32)


_NOISE_TILES: dict[int, np.ndarray] = {raw: _class_noise_tile(raw) for raw in _LOOKS}


def _paint(raw: int, u: np.ndarray, v: np.ndarray, looks: Mapping[int, _Look] = _LOOKS) -> np.ndarray:
    """Colours [N, 3] of class ``raw`` at texture coordinates (u, v) (pixels, object or world frame)."""
    look = looks[raw]
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
    bounce: bool = False  # reflect at the frame's left/right edges (fast motion keeps objects in view)


@dataclass(frozen=True)
class _Pole:
    x: float  # world x of the axis (pixels)
    half_width: float
    top: float  # screen y where it starts (reaches the bottom)
    front: bool  # drawn in front of the objects


@dataclass(frozen=True)
class _Effects:
    """Per-frame draws of the difficulty knobs (from their own random stream), already scaled."""

    shake: np.ndarray  # [T, 2] image offset (x, y) in pixels
    gain: np.ndarray  # [T, 3] colour gain (brightness x white balance)
    quality: np.ndarray  # [T] JPEG quality


@dataclass(frozen=True)
class _Scene:
    bands: tuple[int, ...]  # raw classes, top to bottom
    borders: tuple[
        tuple[float, float, float, float], ...
    ]  # per border: level (frac of H), amp, wavelength, phase
    pan: float  # camera speed, pixels / frame (background scrolls by -pan)
    objects: tuple[_Object, ...]  # back to front
    void_blobs: tuple[
        tuple[float, float, float, float, int, int], ...
    ]  # world x, y, rx, ry, first, last frame
    flips_per_frame: int
    knobs: Difficulty = EASY
    poles: tuple[_Pole, ...] = ()
    effects: _Effects | None = None  # None: easy (nothing drawn, nothing applied)


def _make_scene(
    rng: np.random.Generator,
    frames: int,
    h: int,
    w: int,
    knobs: Difficulty = EASY,
    fx: np.random.Generator | None = None,
) -> _Scene:
    """A video's scene from ``rng`` (the same draws at every difficulty) and, unless ``knobs`` is
    easy, its thin poles and per-frame effects from ``fx``."""
    n_bands = int(rng.integers(2, 4))
    bands = [int(rng.choice(_TOP_BANDS[: knobs.band_choices]))]
    if n_bands == 3:
        bands.append(int(rng.choice(_MIDDLE_BANDS[: knobs.band_choices])))
    bands.append(int(rng.choice(_BOTTOM_BANDS[: knobs.band_choices])))
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

    n_obj = int(rng.integers(knobs.min_objects, knobs.max_objects + 1))
    pool = _OBJECTS[: knobs.object_classes]
    classes = [int(c) for c in rng.choice(pool, size=n_obj - 1, replace=n_obj - 1 > len(pool))]
    classes.insert(int(rng.integers(0, n_obj)), RAW_OTHERS)  # one "others" object at a random depth
    span = max(frames - 1, 1)
    fast = knobs.speed
    objects = []
    for i, raw in enumerate(classes):
        a = float(rng.uniform(0.06, 0.16) * w * knobs.object_scale)
        b = float(rng.uniform(0.08, 0.25) * h * knobs.object_scale)
        speed = float(rng.uniform(0.3, 1.0) * w / span * fast)
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
                vy=float(rng.uniform(-0.3, 0.3) * h / span * fast),
                bob=float(rng.uniform(0, 0.04) * h),
                angle0=float(rng.uniform(-0.4, 0.4)),
                spin=float(rng.uniform(-0.03, 0.03) * fast),
                phase=float(rng.uniform(0, 2 * np.pi)),
                bounce=fast > 1.0 and i >= 2,
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
    poles: tuple[_Pole, ...] = ()
    effects = None
    if knobs != EASY:
        if fx is None:
            raise ValueError("a difficulty other than easy needs its own random stream (fx)")
        # Every draw happens whatever the knobs, in a fixed order: turning one knob never changes
        # what another one does for the same seed.
        shake = fx.standard_normal((frames, 2)) * knobs.shake
        brightness = fx.standard_normal((frames, 1)) * knobs.brightness_flicker
        balance = fx.standard_normal((frames, 3)) * knobs.white_balance_flicker
        quality = knobs.jpeg_quality - np.rint(fx.uniform(0, 1, frames) * knobs.jpeg_jitter)
        effects = _Effects(
            shake=shake.astype(np.float32),
            gain=np.exp(brightness + balance).astype(np.float32),
            quality=quality.astype(np.int64),
        )
        travel = (min(0.0, pan * span), max(0.0, pan * span) + w)  # world x seen during the video
        pole_draws = fx.uniform(0, 1, (20, 4))
        poles = tuple(
            _Pole(
                x=float(travel[0] + d[0] * (travel[1] - travel[0])),
                half_width=float((0.5 + d[1]) * max(1.0, w / 160)),
                top=float((0.05 + 0.45 * d[2]) * h),
                front=bool(d[3] < 0.5),
            )
            for d in pole_draws[: knobs.thin]
        )
    return _Scene(
        bands=tuple(bands),
        borders=borders,
        pan=pan,
        objects=tuple(objects[i] for i in order),
        void_blobs=tuple(void_blobs),
        flips_per_frame=max(4, (h * w) // 2000),
        knobs=knobs,
        poles=poles,
        effects=effects,
    )


def _reflect(x: float, width: float) -> float:
    """``x`` folded into [0, width] as by elastic bounces at both ends."""
    q = x % (2 * width)
    return q if q <= width else 2 * width - q


def _draw_pole(
    pole: _Pole,
    xw: np.ndarray,
    yb: np.ndarray,
    looks: Mapping[int, _Look],
    label: np.ndarray,
    colour: np.ndarray,
    void: np.ndarray,
) -> None:
    """Paint a world-fixed vertical pole (1 px void ring on its sides) into label/colour/void in place."""
    d = np.abs(xw - pole.x)
    below = yb >= pole.top
    inside = below & (d <= pole.half_width)
    ring = below & ~inside & (d <= pole.half_width + 1.0)
    if not inside.any():
        return
    label[inside] = _POLE
    colour[inside] = _paint(_POLE, xw[inside] - pole.x, yb[inside], looks)
    void[inside] = False
    void[ring] = True


def _render_geometry(
    scene: _Scene, t: float, h: int, w: int, offset: float, shake: tuple[float, float] = (0.0, 0.0)
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Colour float32 [H, W, 3], raw label uint8 [H, W] and void bool [H, W] of the scene at time
    ``t`` with the background scrolled by ``offset`` and the image moved by ``shake`` (no noise)."""
    looks = _looks(scene.knobs.lookalike)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    sx, sy = shake
    xw = xx + offset  # world x of every pixel
    yb = yy  # world y of every pixel
    if sx or sy:
        xw = xw + np.float32(sx)
        yb = yy + np.float32(sy)

    # Background bands: the band index of a pixel is how many borders lie above it.
    band = np.zeros((h, w), dtype=np.int64)
    for level, amp, wavelength, phase in scene.borders:
        if sx or sy:
            border = level * h + amp * np.sin(2 * np.pi * xw / wavelength + phase)
            band += yb >= border
        else:
            border = level * h + amp * np.sin(2 * np.pi * xw[0] / wavelength + phase)
            band += yy >= border[None, :]
    label = np.asarray(scene.bands, dtype=np.uint8)[band]
    colour = np.empty((h, w, 3), dtype=np.float32)
    for i, raw in enumerate(scene.bands):
        sel = band == i
        colour[sel] = _paint(raw, xw[sel], yb[sel], looks)
    # Soft vertical light falloff makes the background a little less synthetic.
    colour *= (1.05 - 0.15 * yy / h)[..., None]

    void = np.zeros((h, w), dtype=bool)
    for pole in scene.poles:
        if not pole.front:
            _draw_pole(pole, xw, yb, looks, label, colour, void)
    border_px = 1.5
    for obj in scene.objects:
        cx = obj.x0 + obj.vx * t
        if obj.bounce:
            cx = _reflect(cx, float(w))
        cy = obj.y0 + obj.vy * t + obj.bob * np.sin(0.5 * scene.knobs.speed * t + obj.phase)
        if sx or sy:
            cx, cy = cx - sx, cy - sy
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
        box_colour[inside] = _paint(obj.raw, u[inside], v[inside], looks) * shade[inside][:, None]
        box_void[inside] = False  # a nearer object hides the void border of a farther one
        box_void[ring] = True
    for pole in scene.poles:
        if pole.front:
            _draw_pole(pole, xw, yb, looks, label, colour, void)

    for bx, by, rx, ry, first, last in scene.void_blobs:
        if first <= t <= last:
            # Blobs sit still in the world: unlabelled patches scroll with the background.
            void |= ((xw - bx) / rx) ** 2 + ((yb - by) / ry) ** 2 <= 1.0
    return colour, label, void


#: Sub-frames averaged for motion blur (the middle one is the labelled instant).
BLUR_SUBFRAMES = 5


def _render_frame(
    scene: _Scene, t: int, h: int, w: int, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """RGB uint8 [H, W, 3] and raw label uint8 [H, W] of frame ``t``."""
    knobs, fx = scene.knobs, scene.effects
    offset = float(np.round(scene.pan * t))  # integer pan: labels scroll exactly with the texture
    shake = (float(fx.shake[t, 0]), float(fx.shake[t, 1])) if fx is not None else (0.0, 0.0)
    colour, label, void = _render_geometry(scene, t, h, w, offset, shake)
    if knobs.motion_blur > 0:
        # The exposure integrates the scene over [t - e/2, t + e/2] (camera pan included); the
        # mask is the middle instant, as an annotator labels a blurred frame.
        total = colour.copy()
        for dt in np.linspace(-knobs.motion_blur / 2, knobs.motion_blur / 2, BLUR_SUBFRAMES):
            if dt != 0.0:
                total += _render_geometry(scene, t + float(dt), h, w, offset + scene.pan * float(dt), shake)[
                    0
                ]
        colour = total / BLUR_SUBFRAMES

    # Label noise: a few pixels on horizontal label boundaries take their left neighbour's label.
    edges = np.flatnonzero((label[:, 1:] != label[:, :-1]).ravel())
    if edges.size:
        pick = rng.choice(edges, size=min(scene.flips_per_frame, edges.size), replace=False)
        rows, cols = np.divmod(pick, w - 1)
        label[rows, cols + 1] = label[rows, cols]

    raw = np.where(void, np.uint8(RAW_VOID), label).astype(np.uint8)
    if fx is not None and (knobs.brightness_flicker > 0 or knobs.white_balance_flicker > 0):
        colour = colour * fx.gain[t]  # illumination and white balance of this frame
    colour += rng.normal(0.0, knobs.noise, size=colour.shape).astype(np.float32)  # sensor noise
    image = np.clip(np.rint(colour), 0, 255).astype(np.uint8)
    return image, raw


def _frame_quality(scene: _Scene, t: int) -> int:
    """JPEG quality of frame ``t``."""
    return int(scene.effects.quality[t]) if scene.effects is not None else JPEG_QUALITY


def _effects_rng(seed: int, video: int) -> np.random.Generator:
    """The difficulty knobs' own random stream of one video (apart from the scene's ``[seed, video]``)."""
    return np.random.default_rng([seed, video, 1])


def render_video(
    frames: int, size: tuple[int, int] = (180, 320), seed: int = 0, difficulty: str | Difficulty = "easy"
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Render one synthetic video in memory, frame by frame: (RGB uint8 [H, W, 3], raw label uint8 [H, W]).

    Scenes of the kind :func:`synthesize` writes (moving, occluding objects, camera pan; raw labels
    0..124 and 255), without touching the disk: what ``vssbench profile`` feeds content-dependent
    methods so that their non-keyframe cost is that of a real-looking video. The frames are not
    JPEG-compressed (``jpeg_*`` knobs apply to written datasets only).
    """
    knobs = resolve_difficulty(difficulty)
    h, w = _check_params(1, frames, size, seed)
    rng = np.random.default_rng([seed, 0])
    scene = _make_scene(rng, frames, h, w, knobs, _effects_rng(seed, 0))
    for t in range(frames):
        yield _render_frame(scene, t, h, w, rng)


def _split_videos(ids: list[str], val_videos: int | None = None) -> dict[str, list[str]]:
    n_val = max(1, len(ids) // 2) if val_videos is None else val_videos
    n_test = 1 if len(ids) >= 3 and len(ids) - n_val >= 2 else 0
    return {
        "train": ids[n_val + n_test :],
        "val": ids[:n_val],
        "test": ids[n_val : n_val + n_test],
    }


def _write_tree(
    tmp: Path,
    videos: int,
    frames: int,
    size: tuple[int, int],
    seed: int,
    knobs: Difficulty = EASY,
    name: str = "easy",
    val_videos: int | None = None,
    more_val_videos: int = 0,
) -> dict[str, object]:
    h, w = size
    ids = [f"{v + 1:04d}_synth{v + 1:04d}" for v in range(videos + more_val_videos)]
    palette = RAW_PALETTE.tobytes()
    for v, vid in enumerate(ids):
        rng = np.random.default_rng([seed, v])
        scene = _make_scene(rng, frames, h, w, knobs, _effects_rng(seed, v))
        start = int(rng.integers(1, 5000))  # real VSPW clips rarely start at frame 00000001
        origin = tmp / "data" / vid / "origin"
        mask = tmp / "data" / vid / "mask"
        origin.mkdir(parents=True)
        mask.mkdir(parents=True)
        for t in range(frames):
            image, raw = _render_frame(scene, t, h, w, rng)
            stem = f"{start + t:08d}"
            Image.fromarray(image).save(
                origin / f"{stem}.jpg", format="JPEG", quality=_frame_quality(scene, t)
            )
            png = Image.fromarray(raw)
            png.putpalette(palette)  # 'L' -> 'P' keeping the raw values as indices
            png.save(mask / f"{stem}.png", format="PNG")
    splits = _split_videos(ids[:videos], val_videos)
    splits["val"] += ids[videos:]  # the extra videos change no other split
    for split, members in splits.items():
        (tmp / f"{split}.txt").write_text("".join(f"{m}\n" for m in members), encoding="utf-8")
    meta: dict[str, object] = {
        "generator": "vssbench.data.synth",
        "version": SYNTH_VERSION,
        "videos": videos,
        "frames": frames,
        "size": [h, w],
        "seed": seed,
        "splits": {k: len(m) for k, m in splits.items()},
    }
    if more_val_videos:  # a tree without them keeps the marker it always had
        meta["more_val_videos"] = more_val_videos
    if knobs != EASY:  # an easy tree's marker stays what it always was
        meta["difficulty"] = name
        meta["knobs"] = knobs.to_dict()
    return meta


def _check_params(
    videos: int,
    frames: int,
    size: tuple[int, int],
    seed: int = 0,
    val_videos: int | None = None,
    more_val_videos: int = 0,
) -> tuple[int, int]:
    """(H, W) of valid generator parameters; an :class:`OptionError` naming the flag and value otherwise."""
    if videos < 1:
        raise OptionError(f"--videos {videos}: must be >= 1")
    if more_val_videos < 0:
        raise OptionError(f"--more-val-videos {more_val_videos}: must be >= 0")
    if val_videos is not None and not 1 <= val_videos <= videos - 1:
        raise OptionError(
            f"--val-videos {val_videos}: must be in 1..{videos - 1} (--videos {videos} minus a train video)"
        )
    if frames < 1:
        raise OptionError(f"--frames {frames}: must be >= 1")
    if len(size) != 2 or min(size) < 16:
        shown = "x".join(str(s) for s in size)
        raise OptionError(f"--size {shown}: both sides must be >= 16 pixels")
    if seed < 0:
        raise OptionError(f"--seed {seed}: must be >= 0")
    return int(size[0]), int(size[1])


def _build(
    out: Path,
    videos: int,
    frames: int,
    size: tuple[int, int],
    seed: int,
    knobs: Difficulty = EASY,
    name: str = "easy",
    val_videos: int | None = None,
    more_val_videos: int = 0,
) -> Path:
    """Build the tree in a temporary sibling of ``out``, marker last; returns the temporary path."""
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-", dir=out.parent))
    try:
        meta = _write_tree(tmp, videos, frames, size, seed, knobs, name, val_videos, more_val_videos)
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
    difficulty: str | Difficulty = "easy",
    val_videos: int | None = None,
    more_val_videos: int = 0,
    **knobs: object,
) -> Path:
    """Write a synthetic VSPW-mini of ``videos`` x ``frames`` frames of ``size`` (H, W) to ``out``.

    ``val_videos`` is the size of the val split (default half the videos, at least one); one
    video goes to ``test`` when at least two remain, the rest to ``train``. ``more_val_videos``
    (K >= 0) renders K further videos and appends them to ``val``, leaving every file of the
    dataset without them unchanged (the marker records K when it is not 0).
    ``difficulty`` is a preset name of :data:`PRESETS` or a :class:`Difficulty`; ``knobs`` override
    single knobs of it (``noise=8``, ``lookalike=0.5``). Returns ``out``. Raises DataError if
    ``out`` already exists and is not an empty folder (an existing dataset is never overwritten),
    OptionError for a bad parameter. See the module docstring for content and splits.
    """
    resolved = resolve_difficulty(difficulty, **knobs)
    name = difficulty if isinstance(difficulty, str) else "custom"
    if knobs:
        name += "+knobs"
    h, w = _check_params(videos, frames, size, seed, val_videos, more_val_videos)
    out = Path(out)
    if out.exists() and not (out.is_dir() and not any(out.iterdir())):
        raise DataError(out, "already exists and is not empty; choose another --out or remove it")
    tmp = _build(out, videos, frames, (h, w), seed, resolved, name, val_videos, more_val_videos)
    try:
        os.replace(tmp, out)  # atomic; replaces only a missing or empty folder
    except OSError as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        if _is_occupied(exc):
            raise DataError(out, "was created by someone else while generating; not overwritten") from exc
        raise
    return out


def write_dataset(
    out: str | os.PathLike[str],
    difficulty: str = "study",
    videos: int | None = None,
    frames: int | None = None,
    size: tuple[int, int] | None = None,
    seed: int = 0,
    val_videos: int | None = None,
    more_val_videos: int = 0,
    **knobs: object,
) -> Path:
    """Write the dataset of preset ``difficulty`` (default: the synthetic study's) to ``out``.

    The shape (videos, frames, size, val_videos) defaults to the preset's own
    (:data:`PRESET_SHAPES`), else to :func:`synthesize`'s; ``more_val_videos`` extra val videos
    as in :func:`synthesize`. This is what ``vssbench data synth --difficulty NAME`` and
    ``vssbench reproduce`` write.
    """
    shape = dict(DEFAULT_PARAMS, **PRESET_SHAPES.get(difficulty, {}))
    return synthesize(
        out,
        videos=int(shape["videos"]) if videos is None else videos,  # type: ignore[call-overload]
        frames=int(shape["frames"]) if frames is None else frames,  # type: ignore[call-overload]
        size=tuple(shape["size"]) if size is None else size,  # type: ignore[arg-type]
        seed=seed,
        difficulty=difficulty,
        # The preset's val split goes with the preset's number of videos; other counts split in half.
        val_videos=shape.get("val_videos") if val_videos is None and videos is None else val_videos,  # type: ignore[arg-type]
        more_val_videos=more_val_videos,
        **knobs,
    )


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
    # A tree with extra val videos has other splits than the default, though the same parameters.
    return all(meta.get(k) == v for k, v in expected.items()) and not meta.get("more_val_videos")


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
