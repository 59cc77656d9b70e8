"""Synthetic anomaly-detection datasets in MVTec layout, for tests, smoke runs and demos.

Each category is either "textured" (oriented stripes, wood-like grain or a checker pattern with
random phase, small angle jitter and fine noise) or "object" (a centred disc, bottle-top ring or
rounded square with a textured, shaded fill on a plain background, with small pose and
brightness jitter). The kind comes from the category name (see `category_kind`).

Defects change a visible region and the mask is exactly that region: "scratch" (a thick bright or
dark line), "stain" (a blob of a colour far from the category's palette), "missing" (a hole that
shows a dark backing for textures; a cut-out that shows the background for objects).

Every image has its own numpy Generator seeded from (seed, category name, split, defect, index),
so the same call writes byte-identical PNG files and no global random state is touched.
"""

from __future__ import annotations

import json
import zlib
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Literal

import cv2
import numpy as np

from dhkd.errors import DataError

DEFECT_TYPES = ("scratch", "stain", "missing")
Kind = Literal["textured", "object"]
_TEXTURED_WORDS = ("stripe", "textur", "carpet", "grid", "leather", "tile", "wood", "fabric",
                   "grain", "checker", "weave", "cloth", "mesh")  # fmt: skip
_OBJECT_WORDS = ("widget", "object", "bottle", "ring", "disc", "cable", "capsule", "nut", "pill",
                 "screw", "toothbrush", "transistor", "zipper", "cookie", "part")  # fmt: skip
_NAMED_PATTERNS = (("stripe", "stripes"), ("checker", "checker"), ("grid", "checker"),
                   ("tile", "checker"), ("grain", "grain"), ("wood", "grain"))  # fmt: skip
_STAIN_COLOURS = np.array(
    [[0.55, 0.25, 0.08], [0.15, 0.6, 0.2], [0.15, 0.25, 0.75], [0.9, 0.85, 0.15], [0.7, 0.1, 0.5]],
    dtype=np.float32,
)
_SHIFT = 4  # cv2 sub-pixel bits: coordinates are multiplied by 16


def _crc(name: str) -> int:
    return zlib.crc32(name.encode("utf-8"))


def category_kind(name: str) -> Kind:
    """'textured' or 'object': by keywords in the name, else by a stable hash of the name."""
    low = name.lower()
    if any(w in low for w in _TEXTURED_WORDS):
        return "textured"
    if any(w in low for w in _OBJECT_WORDS):
        return "object"
    return "textured" if _crc(low) % 2 == 0 else "object"


@dataclass(frozen=True)
class Style:
    """The look of one synthetic category (colours are RGB in [0, 1])."""

    kind: Kind
    pattern: str  # stripes | grain | checker
    shape: str  # disc | ring | rounded_square (object categories)
    angle: float  # pattern orientation in radians
    freq: float  # pattern periods per image width
    colour_a: tuple[float, float, float]
    colour_b: tuple[float, float, float]
    background: tuple[float, float, float]
    stain: tuple[float, float, float]


def make_style(name: str, seed: int) -> Style:
    """Deterministic style of category `name` for `seed`."""
    rng = np.random.default_rng([seed, _crc(name), 1])
    low = name.lower()
    kind = category_kind(name)
    named = [p for w, p in _NAMED_PATTERNS if w in low]
    pattern = named[0] if named else str(rng.choice(["stripes", "grain", "checker"]))
    shape = (
        "ring"
        if ("ring" in low or "bottle" in low)
        else str(rng.choice(["disc", "ring", "rounded_square"]))
    )
    a = rng.uniform(0.25, 0.75, 3)
    b = np.clip(a + rng.choice([-1, 1]) * rng.uniform(0.15, 0.25, 3), 0.1, 0.9)
    mean = (a + b) / 2
    background = np.clip(1.0 - mean + rng.uniform(-0.05, 0.05, 3), 0.05, 0.95)
    if np.abs(background - mean).max() < 0.3:  # keep the object well apart from the background
        background = np.where(mean > 0.5, 0.12, 0.88) + rng.uniform(-0.03, 0.03, 3)
    dist = np.minimum(np.abs(_STAIN_COLOURS - a).sum(1), np.abs(_STAIN_COLOURS - b).sum(1))
    stain = _STAIN_COLOURS[np.argsort(-dist, kind="stable")[int(rng.integers(0, 2))]]
    colours = [tuple(float(v) for v in c) for c in (a, b, background, stain)]
    angle, freq = float(rng.uniform(0, np.pi)), float(rng.uniform(5, 10))
    return Style(kind, pattern, shape, angle, freq, *colours)


def _smooth_noise(rng: np.random.Generator, size: int, sigma: float) -> np.ndarray:
    """Gaussian noise blurred by `sigma` pixels and rescaled to unit std, float32 (size, size)."""
    noise = rng.standard_normal((size, size)).astype(np.float32)
    noise = cv2.GaussianBlur(noise, (0, 0), sigmaX=sigma, borderType=cv2.BORDER_REFLECT)
    return noise / max(float(noise.std()), 1e-6)


def _pattern(style: Style, rng: np.random.Generator, size: int, freq: float) -> np.ndarray:
    """Texture intensity in [0, 1], float32 (size, size), with random phase and angle jitter."""
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / size
    theta = style.angle + rng.normal(0.0, 0.03)
    w = 2 * np.pi * freq * (1 + rng.normal(0.0, 0.02))
    u = w * (xx * np.cos(theta) + yy * np.sin(theta)) + rng.uniform(0, 2 * np.pi)
    if style.pattern == "checker":
        v = w * (yy * np.cos(theta) - xx * np.sin(theta)) + rng.uniform(0, 2 * np.pi)
        t = 0.5 + 0.5 * np.tanh(3.0 * np.sin(u) * np.sin(v))
    elif style.pattern == "grain":
        t = 0.5 + 0.5 * np.sin(u + 1.5 * _smooth_noise(rng, size, size / 10))
    else:
        t = 0.5 + 0.5 * np.sin(u)
    t = t + 0.06 * _smooth_noise(rng, size, 0.8)
    return np.clip(t, 0.0, 1.0).astype(np.float32)


def _blend(t: np.ndarray, a: Sequence[float], b: Sequence[float]) -> np.ndarray:
    """Colour image (H, W, 3) float32 from intensity t (H, W): a where t=0, b where t=1."""
    a32, b32 = np.asarray(a, np.float32), np.asarray(b, np.float32)
    return a32 + t[..., None] * (b32 - a32)


def _fixed(points: np.ndarray) -> np.ndarray:
    """Float pixel coordinates (..., 2) as int32 cv2 sub-pixel coordinates."""
    return np.round(points * (1 << _SHIFT)).astype(np.int32)


def _silhouette(style: Style, rng: np.random.Generator, size: int) -> tuple[np.ndarray, tuple]:
    """Object mask uint8 (size, size) in {0, 1} and (centre x, centre y, radius)."""
    cx, cy = size / 2 + rng.normal(0, 0.015 * size, 2)
    r = 0.32 * size * (1 + rng.normal(0, 0.02))
    sil = np.zeros((size, size), np.uint8)
    if style.shape == "rounded_square":
        half, rad = 0.85 * r, 0.3 * r
        corners = [(1, 1, 0), (-1, 1, 90), (-1, -1, 180), (1, -1, 270)]
        pts = [
            np.array(cv2.ellipse2Poly((0, 0), (1000, 1000), 0, a0, a0 + 90, 10), np.float32) / 1000
            * rad + (sx * (half - rad), sy * (half - rad))
            for sx, sy, a0 in corners
        ]  # fmt: skip
        ang = np.deg2rad(rng.normal(0, 4))
        rot = np.array([[np.cos(ang), -np.sin(ang)], [np.sin(ang), np.cos(ang)]], np.float32)
        poly = np.concatenate(pts) @ rot.T + (cx, cy)
        cv2.fillPoly(sil, [_fixed(poly)], 1, cv2.LINE_8, _SHIFT)
    else:
        cv2.circle(sil, tuple(_fixed(np.array([cx, cy]))), int(r * 16), 1, -1, cv2.LINE_8, _SHIFT)
    return sil, (float(cx), float(cy), float(r))


def _render_normal(style: Style, rng: np.random.Generator, size: int) -> tuple:
    """A defect-free image float32 (size, size, 3), its background and object mask (or None)."""
    if style.kind == "textured":
        img = _blend(_pattern(style, rng, size, style.freq), style.colour_a, style.colour_b)
        return img * (1 + rng.normal(0, 0.03)), None, None, None
    bg = np.broadcast_to(np.asarray(style.background, np.float32), (size, size, 3))
    bg = bg + 0.01 * _smooth_noise(rng, size, 0.7)[..., None]
    sil, (cx, cy, r) = _silhouette(style, rng, size)
    fill = _blend(_pattern(style, rng, size, 2 * style.freq), style.colour_a, style.colour_b)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    d2 = ((xx - cx) ** 2 + (yy - cy) ** 2) / (r * r)
    fill = fill * (1.1 - 0.3 * np.clip(d2, 0, 1.5))[..., None]  # shading: brighter centre
    if style.shape == "ring":
        fill = np.where((d2 < 0.35)[..., None], fill * 0.45, fill)  # dark bottle opening
    img = np.where(sil[..., None] > 0, fill, bg) * (1 + rng.normal(0, 0.03))
    return img, bg, sil, (cx, cy, r)


def _rim_point(sil: np.ndarray, geom: tuple, angle: float, inset: float) -> np.ndarray:
    """The point `inset` pixels inside the silhouette's edge on the ray from the centre."""
    cx, cy, r = geom
    direction = _unit(angle)
    steps = np.arange(0.0, 1.6 * r, 0.5)
    xy = np.round(np.array([cx, cy]) + steps[:, None] * direction).astype(int)
    xy = np.clip(xy, 0, sil.shape[0] - 1)
    inside = sil[xy[:, 1], xy[:, 0]] > 0
    edge = steps[np.flatnonzero(inside)[-1]] if inside.any() else r
    return np.array([cx, cy]) + max(edge - inset, 0.0) * direction


def _defect_region(
    kind: str, rng: np.random.Generator, size: int, geom, sil: np.ndarray | None
) -> np.ndarray:
    """Region uint8 (size, size) in {0, 1} where a defect of `kind` will change the image."""
    region = np.zeros((size, size), np.uint8)
    if geom is None:  # texture: anywhere away from the border
        c, reach = rng.uniform(0.2 * size, 0.8 * size, 2), 0.35 * size
    else:
        cx, cy, r = geom
        reach = r
        c = np.array([cx, cy]) + rng.uniform(0.0, 0.5 * r) * _unit(rng.uniform(0, 2 * np.pi))
    if kind == "scratch":
        direction = _unit(rng.uniform(0, np.pi))
        half = 0.5 * rng.uniform(0.5, 0.9) * reach
        bend = np.array([-direction[1], direction[0]]) * rng.normal(0, 0.1 * half)
        pts = np.stack([c - half * direction, c + bend, c + half * direction])
        thick = max(2, round(size / 40))
        cv2.polylines(region, [_fixed(pts)], False, 1, thick, cv2.LINE_8, _SHIFT)
    else:
        n = int(rng.integers(7, 11))
        angles = (np.arange(n) + rng.uniform(-0.3, 0.3, n)) * (2 * np.pi / n)
        scale = (0.08, 0.14) if kind == "missing" and geom is not None else (0.05, 0.1)
        radius = size * rng.uniform(*scale) * rng.uniform(0.65, 1.0, n)
        if kind == "missing" and sil is not None:  # cut-out centred just inside the rim
            c = _rim_point(sil, geom, rng.uniform(0, 2 * np.pi), 0.3 * float(radius.mean()))
        poly = c + radius[:, None] * np.stack([np.cos(angles), np.sin(angles)], 1)
        cv2.fillPoly(region, [_fixed(poly)], 1, cv2.LINE_8, _SHIFT)
    return region


def _unit(angle: float) -> np.ndarray:
    return np.array([np.cos(angle), np.sin(angle)])


def _vary(normal: np.ndarray, rng: np.random.Generator, difficulty: float) -> np.ndarray:
    """More variation between good images: a random illumination gradient, a colour cast and
    coarse blotches, all growing with `difficulty`."""
    size = normal.shape[0]
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / size - 0.5
    direction = rng.normal(0, 1, 2)
    gradient = 1 + 0.5 * difficulty * (direction[0] * xx + direction[1] * yy)
    cast = 1 + rng.normal(0, 0.06 * difficulty, 3).astype(np.float32)
    blotches = 0.08 * difficulty * _smooth_noise(rng, size, size / 12)
    return normal * gradient[..., None] * cast + blotches[..., None]


def render_sample(
    style: Style,
    rng: np.random.Generator,
    size: int,
    defect: str | None,
    difficulty: float = 0.0,
    variation: np.random.Generator | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One image. Returns (normal, image, mask): uint8 (size, size, 3) RGB twice and uint8
    (size, size) in {0, 1}; `image` differs from `normal` only inside `mask` (all zero if good).

    difficulty in [0, 1]: 0 is the plain generator; above it good images vary more (drawn from
    `variation`, a generator of its own so that difficulty 0 draws exactly what it always did)
    and defects are blended more faintly (at 1 - 0.75 * difficulty of their full contrast).
    """
    if defect is not None and defect not in DEFECT_TYPES:
        raise DataError(f"unknown synthetic defect {defect!r}; use one of {DEFECT_TYPES}")
    if not 0.0 <= difficulty <= 1.0:
        raise DataError(f"difficulty must be in [0, 1], got {difficulty}")
    normal, bg, sil, geom = _render_normal(style, rng, size)
    if difficulty > 0:
        if variation is None:
            raise DataError("difficulty > 0 needs the `variation` generator")
        normal = _vary(normal, variation, difficulty)
        if bg is not None:
            bg = _vary(bg, variation, difficulty)
    image = normal.copy()
    mask = np.zeros((size, size), np.uint8)
    for _ in range(20):  # redraw the rare defect that falls almost entirely off the object
        if defect is None:
            break
        mask = _defect_region(defect, rng, size, geom, sil)
        if sil is not None:
            mask &= sil
        if mask.sum() >= max(6, 0.003 * size * size):
            break
    m = mask[..., None] > 0
    if defect == "scratch":
        lum = float(normal[mask > 0].mean()) if mask.any() else 0.5
        tone = 0.05 if lum > 0.5 else 0.95
        image = np.where(m, tone + 0.02 * rng.standard_normal(image.shape), image)
    elif defect == "stain":
        image = np.where(m, 0.25 * image + 0.75 * np.asarray(style.stain), image)
    elif defect == "missing":
        hole = bg if bg is not None else np.full_like(image, 0.06) + 0.02 * rng.random(image.shape)
        image = np.where(m, hole, image)
    if difficulty > 0:
        image = normal + (1 - 0.75 * difficulty) * (image - normal)
    normal_u8, image_u8 = _to_uint8(normal), _to_uint8(image)
    return normal_u8, image_u8, (mask & (image_u8 != normal_u8).any(-1)).astype(np.uint8)


def _to_uint8(image: np.ndarray) -> np.ndarray:
    return np.clip(np.round(image * 255), 0, 255).astype(np.uint8)


def _write_png(path: Path, rgb_or_mask: np.ndarray) -> None:
    img = rgb_or_mask if rgb_or_mask.ndim == 2 else cv2.cvtColor(rgb_or_mask, cv2.COLOR_RGB2BGR)
    ok, buf = cv2.imencode(".png", img)
    if not ok:
        raise DataError(f"could not encode {path} as PNG")
    path.parent.mkdir(parents=True, exist_ok=True)
    buf.tofile(path)


def _check_args(
    out: Path, categories: Sequence[str], image_size: int, seed: int, counts: dict
) -> None:
    if isinstance(categories, str) or not categories:
        raise DataError("categories must be a non-empty list of names, e.g. ['stripes', 'widget']")
    for name in categories:
        if not name or name in (".", "..") or any(c in name for c in "/\\:"):
            raise DataError(f"category name {name!r} is not a valid folder name")
    if len(set(categories)) != len(categories):
        raise DataError(f"categories must be distinct, got {list(categories)}")
    if not isinstance(seed, (int, np.integer)) or seed < 0:
        raise DataError(f"seed must be a non-negative integer, got {seed!r}")
    if not 16 <= image_size <= 2048:
        raise DataError(f"image_size must be in 16..2048, got {image_size}")
    if counts["n_train"] < 1 or counts["n_test_good"] < 0 or counts["n_test_defect"] < 0:
        raise DataError(f"need n_train >= 1 and non-negative test counts, got {counts}")
    if counts["n_test_good"] + counts["n_test_defect"] < 1:
        raise DataError("need at least one test image (n_test_good + n_test_defect >= 1)")
    for name in categories:
        folder = out / name
        if folder.exists() and any(folder.iterdir()):
            raise DataError(
                f"{folder} already exists and is not empty; choose another output folder or "
                "delete it first (the generator never overwrites files)"
            )


def make_synthetic_dataset(
    out: str | Path,
    categories: Sequence[str],
    image_size: int = 128,
    seed: int = 0,
    n_train: int = 24,
    n_test_good: int = 8,
    n_test_defect: int = 12,
    difficulty: float = 0.0,
) -> Path:
    """Write a synthetic dataset in MVTec layout under `out` and return `out` as a Path.

    Per category: train/good (n_train), test/good (n_test_good), and n_test_defect defective
    images spread over up to three defect types (scratch, stain, missing), each with
    ground_truth/<defect>/<name>_mask.png (0 or 255), all (image_size, image_size) PNG files,
    plus synthetic.json with the generator's parameters. `difficulty` in [0, 1] makes good
    images vary more and defects fainter (see render_sample); 0 writes exactly the files the
    generator wrote before it had the knob. Raises DataError on bad arguments or
    when a category folder already exists and is not empty.
    """
    out = Path(out).expanduser()
    counts = {"n_train": n_train, "n_test_good": n_test_good, "n_test_defect": n_test_defect}
    _check_args(out, categories, image_size, seed, counts)
    if not 0.0 <= difficulty <= 1.0:
        raise DataError(f"difficulty must be in [0, 1], got {difficulty}")
    for name in categories:
        style = make_style(name, seed)
        folder = out / name
        n_types = min(len(DEFECT_TYPES), n_test_defect)
        plan = [("train", "good", n_train), ("test", "good", n_test_good)]
        plan += [
            ("test", d, n_test_defect // n_types + (j < n_test_defect % n_types))
            for j, d in enumerate(DEFECT_TYPES[:n_types])
        ]
        for split_code, (split, defect, n) in enumerate(plan):
            for i in range(n):
                rng = np.random.default_rng([seed, _crc(name), 2, split_code, i])
                variation = np.random.default_rng([seed, _crc(name), 3, split_code, i])
                bad = None if defect == "good" else defect
                _, image, mask = render_sample(style, rng, image_size, bad, difficulty, variation)
                _write_png(folder / split / defect / f"{i:03d}.png", image)
                if bad is not None:
                    _write_png(folder / "ground_truth" / defect / f"{i:03d}_mask.png", mask * 255)
        meta = {"generator": "dhkd.data.synth", "seed": seed, "image_size": image_size, **counts}
        if difficulty > 0:
            meta["difficulty"] = difficulty
        meta["style"] = asdict(style)
        (folder / "synthetic.json").write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n")
    return out
